import {spawn, type ChildProcess} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {existsSync} from 'node:fs'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {run} from '../../src/util/exec.js'
import {freeLoopbackPort} from '../../src/util/net.js'

/** A real OCI registry (Debian's docker-registry, distribution 2.8) on 127.0.0.1 with TLS and htpasswd auth. */
export interface TestRegistry {
  /** https://127.0.0.1:<port> */
  url: string
  /** 127.0.0.1:<port>, as an oci:// reference names it */
  host: string
  /** PEM of the throwaway CA that signed the server's certificate */
  caFile: string
  user: string
  password: string
  /** a temp directory the test may use; removed by stop() */
  dir: string
  /** the registry's log so far */
  log(): string
  /** stops the server and removes its storage, keys and temp directory */
  stop(): Promise<void>
}

const REGISTRY = '/usr/bin/docker-registry'

/**
 * Starts `docker-registry serve` with its own storage, a CA and a server certificate for 127.0.0.1
 * made here with openssl, and one bcrypt htpasswd user. Resolves once it answers on /v2/.
 */
export async function startRegistry(): Promise<TestRegistry> {
  for (const [tool, pkg] of [[REGISTRY, 'docker-registry'], ['/usr/bin/htpasswd', 'apache2-utils'], ['/usr/bin/openssl', 'openssl']]) {
    if (!existsSync(tool)) throw new Error(`${tool} is missing: apt-get install -y ${pkg} (or cvm-image doctor --install)`)
  }
  const dir = await mkdtemp(join(tmpdir(), 'cvm-registry-'))
  const storage = join(dir, 'storage')
  await mkdir(storage)
  const ca = join(dir, 'ca.pem')
  const caKey = join(dir, 'ca.key')
  const cert = join(dir, 'server.pem')
  const key = join(dir, 'server.key')
  const csr = join(dir, 'server.csr')
  const ext = join(dir, 'server.ext')
  const what = 'make the test registry\'s TLS certificates'
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', caKey, '-out', ca, '-days', '2', '-subj', '/CN=cvm-image test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'], {what})
  await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=127.0.0.1'], {what})
  // a client checks the IP against subjectAltName, never the CN
  await writeFile(ext, 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n')
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext], {what})

  const user = 'cvm-ci'
  const password = randomBytes(12).toString('hex')
  const htpasswd = join(dir, 'htpasswd')
  await run('htpasswd', ['-B', '-b', '-c', htpasswd, user, password], {what: 'make the test registry\'s htpasswd file'})

  const port = await freeLoopbackPort()
  const config = join(dir, 'config.yml')
  await writeFile(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: info',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${storage}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      `  secret: ${randomBytes(16).toString('hex')}`,
      '  tls:',
      `    certificate: ${cert}`,
      `    key: ${key}`,
      'auth:',
      '  htpasswd:',
      '    realm: cvm-image-test',
      `    path: ${htpasswd}`,
      '',
    ].join('\n'),
  )

  const child: ChildProcess = spawn(REGISTRY, ['serve', config], {stdio: ['ignore', 'pipe', 'pipe']})
  let log = ''
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`docker-registry did not start within 20 s:\n${log}`)), 20_000)
    const onData = () => {
      if (/listening on 127\.0\.0\.1/.test(log)) {
        clearTimeout(timer)
        resolve()
      }
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`docker-registry exited with ${code} before listening:\n${log}`))
    })
  })

  let stopped = false
  return {
    url: `https://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    caFile: ca,
    user,
    password,
    dir,
    log: () => log,
    async stop() {
      if (stopped) return
      stopped = true
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r))
        child.kill('SIGTERM')
        await exited
      }
      await rm(dir, {recursive: true, force: true})
    },
  }
}
