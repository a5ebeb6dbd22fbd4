import {spawn, type ChildProcess} from 'node:child_process'
import {existsSync} from 'node:fs'
import {chmod, mkdir, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir, userInfo} from 'node:os'
import {join} from 'node:path'

import {fingerprintOfLine} from '../../src/remote/host-key.js'
import {run} from '../../src/util/exec.js'
import {freeLoopbackPort} from '../../src/util/net.js'

/** A real OpenSSH server on 127.0.0.1 for tests: its own host key, one authorized user key. */
export interface TestSshd {
  host: string
  port: number
  user: string
  /** SHA256:<base64> of the server's (first) host key, as `ssh-keygen -l` prints it */
  hostKeyFingerprint: string
  /** every host key the server has, in the order given: its type (ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa), public key line and fingerprint */
  hostKeys: {type: string; publicKey: string; fingerprint: string}[]
  /** a known_hosts file holding the server's key as [127.0.0.1]:port */
  knownHostsFile: string
  /** private key (OpenSSH format, no passphrase) the server accepts for `user` */
  userKeyPath: string
  /** a temp directory the test may use (also the server's home of test files) */
  dir: string
  /** the sessions' $TMPDIR (SetEnv), where a remote validation host keeps its temp files */
  tmpDir: string
  /** the server's stderr so far (sshd -e logs there) */
  log(): string
  /** stops the server and removes its temp directory */
  stop(): Promise<void>
}

const SSHD = '/usr/sbin/sshd'



/**
 * Starts /usr/sbin/sshd -D -e with a config of its own on a free 127.0.0.1 port, as the current user
 * (root in CI, where PermitRootLogin must be yes). Resolves once the server is listening.
 * sftpOnly: the account runs no commands (ForceCommand internal-sftp), as on many release servers.
 * hostKeyTypes: the host keys it has (default ed25519 only), as a server with several keys would.
 */
export async function startSshd(opts: {sftpOnly?: boolean; hostKeyTypes?: ('ed25519' | 'ecdsa' | 'rsa')[]} = {}): Promise<TestSshd> {
  if (!existsSync(SSHD)) throw new Error(`${SSHD} is missing: apt-get install -y openssh-server`)
  const dir = await mkdtemp(join(tmpdir(), 'cvm-sshd-'))
  await chmod(dir, 0o755)
  const user = userInfo().username
  const hostKeyFiles = (opts.hostKeyTypes ?? ['ed25519']).map((t) => join(dir, `ssh_host_${t}_key`))
  const userKey = join(dir, 'id_ed25519')
  for (const f of hostKeyFiles) await run('ssh-keygen', ['-q', '-t', /ssh_host_(\w+)_key$/.exec(f)![1], '-N', '', '-C', 'cvm-test-host', '-f', f], {what: 'make a test host key'})
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'cvm-test-user', '-f', userKey], {what: 'make a test user key'})
  const tmpDir = join(dir, 'tmp')
  await mkdir(tmpDir, {mode: 0o700})
  const authorizedKeys = join(dir, 'authorized_keys')
  await writeFile(authorizedKeys, await readFile(`${userKey}.pub`))
  await chmod(authorizedKeys, 0o600)
  // privilege separation needs this directory when sshd starts as root
  if (process.getuid?.() === 0) await mkdir('/run/sshd', {recursive: true, mode: 0o755})

  const sftpServer = existsSync('/usr/lib/openssh/sftp-server') ? '/usr/lib/openssh/sftp-server' : 'internal-sftp'
  const port = await freeLoopbackPort()
  const config = join(dir, 'sshd_config')
  await writeFile(
    config,
    [
      `ListenAddress 127.0.0.1:${port}`,
      ...hostKeyFiles.map((f) => `HostKey ${f}`),
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin yes',
      'StrictModes no',
      'UsePAM no',
      'AllowTcpForwarding yes',
      'PrintMotd no',
      'LogLevel VERBOSE',
      `Subsystem sftp ${sftpServer}`,
      // the sessions' temp files land in this server's own directory, apart from other tests running at once
      `SetEnv TMPDIR=${tmpDir}`,
      // an SFTP-only account: every exec request runs the SFTP server instead of the command
      ...(opts.sftpOnly ? ['ForceCommand internal-sftp'] : []),
      '',
    ].join('\n'),
  )

  const child: ChildProcess = spawn(SSHD, ['-D', '-e', '-f', config], {stdio: ['ignore', 'ignore', 'pipe']})
  let log = ''
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sshd did not start within 10 s:\n${log}`)), 10_000)
    const onData = () => {
      if (log.includes('Server listening')) {
        clearTimeout(timer)
        child.stderr!.off('data', onData)
        resolve()
      }
    }
    child.stderr!.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`sshd exited with ${code} before listening:\n${log}`))
    })
  })

  const hostKeys = await Promise.all(
    hostKeyFiles.map(async (f) => {
      const line = await readFile(`${f}.pub`, 'utf8')
      const [type, b64] = line.trim().split(/\s+/)
      return {type, publicKey: `${type} ${b64}`, fingerprint: fingerprintOfLine(line)}
    }),
  )
  const knownHostsFile = join(dir, 'known_hosts')
  await writeFile(knownHostsFile, hostKeys.map((k) => `[127.0.0.1]:${port} ${k.publicKey}\n`).join(''))

  let stopped = false
  return {
    host: '127.0.0.1',
    port,
    user,
    hostKeyFingerprint: hostKeys[0].fingerprint,
    hostKeys,
    knownHostsFile,
    userKeyPath: userKey,
    dir,
    tmpDir,
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
