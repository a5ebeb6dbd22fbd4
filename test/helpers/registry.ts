import {spawn, type ChildProcess} from 'node:child_process'
import {createPrivateKey, randomBytes, sign} from 'node:crypto'
import {closeSync, existsSync, openSync, readFileSync} from 'node:fs'
import {mkdir, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {createServer, type Server} from 'node:https'
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
 * auth 'bearer': the registry takes only tokens (distribution's token auth), which a token service
 * started here issues to that user as ES256 JWTs signed by a key the CA certified (header x5c).
 */
export async function startRegistry(opts: {auth?: 'basic' | 'bearer'} = {}): Promise<TestRegistry> {
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
  let tokens: Server | undefined
  let authConfig = ['auth:', '  htpasswd:', '    realm: cvm-image-test', `    path: ${htpasswd}`]
  if (opts.auth === 'bearer') {
    const signKey = join(dir, 'token.key')
    const signCsr = join(dir, 'token.csr')
    const signCert = join(dir, 'token.pem')
    await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', signKey, '-out', signCsr, '-subj', '/CN=cvm-image test token issuer'], {what})
    await run('openssl', ['x509', '-req', '-in', signCsr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-out', signCert, '-days', '2'], {what})
    tokens = await startTokenService({user, password, cert, key, signKey: await readFile(signKey), signCert: await readFile(signCert, 'utf8')})
    const realm = `https://127.0.0.1:${(tokens.address() as {port: number}).port}/token`
    authConfig = ['auth:', '  token:', `    realm: ${realm}`, '    service: cvm-image-test', '    issuer: cvm-image-test-issuer', `    rootcertbundle: ${ca}`]
  }
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
      ...authConfig,
      '',
    ].join('\n'),
  )

  // the log goes to a file, not a pipe: a pipe the test process does not drain (a spawnSync, a
  // blocked event loop) fills at 64 KiB, and then every request of the registry waits on its log
  // line (the team-cache bench's runner A lost its pushes so: docs/remote-cache.md "Measured")
  const logFile = join(dir, 'registry.log')
  const logFd = openSync(logFile, 'a', 0o600)
  const child: ChildProcess = spawn(REGISTRY, ['serve', config], {stdio: ['ignore', logFd, logFd]})
  closeSync(logFd)
  const readLog = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '')
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      clearInterval(poll)
      reject(new Error(`docker-registry did not start within 20 s:\n${readLog()}`))
    }, 20_000)
    const poll = setInterval(() => {
      if (!/listening on 127\.0\.0\.1/.test(readLog())) return
      clearTimeout(timer)
      clearInterval(poll)
      resolve()
    }, 50)
    child.once('exit', (code) => {
      clearTimeout(timer)
      clearInterval(poll)
      reject(new Error(`docker-registry exited with ${code} before listening:\n${readLog()}`))
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
    log: readLog,
    async stop() {
      if (stopped) return
      stopped = true
      tokens?.close()
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r))
        child.kill('SIGTERM')
        await exited
      }
      await rm(dir, {recursive: true, force: true})
    },
  }
}

/**
 * The token service of distribution's token auth: Basic credentials in, a JWT out for the scope asked,
 * signed ES256 (JOSE's r||s form) with the issuer certificate in the header's x5c.
 */
async function startTokenService(o: {user: string; password: string; cert: string; key: string; signKey: Buffer; signCert: string}): Promise<Server> {
  const key = createPrivateKey(o.signKey)
  const der = Buffer.from(o.signCert.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64').toString('base64')
  const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url')
  const server = createServer({cert: await readFile(o.cert), key: await readFile(o.key)}, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://x')
    const given = Buffer.from(String(req.headers.authorization ?? '').replace(/^Basic /, ''), 'base64').toString('utf8')
    if (given !== `${o.user}:${o.password}`) {
      res.writeHead(401, {'content-type': 'application/json'})
      return res.end('{"details":"bad credentials"}')
    }
    const access = url.searchParams.getAll('scope').flatMap((sc) => {
      const [type, name, actions] = sc.split(':')
      return type && name && actions ? [{type, name, actions: actions.split(',')}] : []
    })
    const now = Math.floor(Date.now() / 1000)
    const head = b64url({alg: 'ES256', typ: 'JWT', x5c: [der]})
    const body = b64url({iss: 'cvm-image-test-issuer', sub: o.user, aud: url.searchParams.get('service'), exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access})
    const sig = sign('sha256', Buffer.from(`${head}.${body}`), {key, dsaEncoding: 'ieee-p1363'}).toString('base64url')
    res.writeHead(200, {'content-type': 'application/json'})
    res.end(JSON.stringify({token: `${head}.${body}.${sig}`}))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return server
}
