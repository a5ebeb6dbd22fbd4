import {createHash} from 'node:crypto'
import {homedir} from 'node:os'
import type {Duplex} from 'node:stream'

import ssh2 from 'ssh2'
import type {ClientChannel, ConnectConfig, SFTPWrapper, Stats} from 'ssh2'

import {HostError, InputError, StageError} from '../errors.js'
import {checkFingerprintSyntax, checkHostKey, hostKeyAlgorithms, type HostKeyPin} from './host-key.js'
import {shellQuote} from './quote.js'
import type {ExecResult} from '../util/exec.js'
import {readPassphraseFile, readPrivateKeyFile} from '../util/private-key.js'
import {copySparse, type CopyProgress, type CopyTarget, type SparseCopyResult} from '../util/sparse-copy.js'

export {fingerprint, hostKeyPinFromFlag, type HostKeyPin} from './host-key.js'
export {shellQuote} from './quote.js'

/** user@host[:port] of an SSH server. */
export interface SshAddress {
  user: string
  host: string
  port: number
}

export function parseSshAddress(spec: string): SshAddress {
  const m = /^([^@\s:/]+)@(\[[^\]]+\]|[^@\s:/]+)(?::(\d{1,5}))?$/.exec(spec)
  if (!m) {
    throw new InputError(`${JSON.stringify(spec)} is not an SSH address`, {hint: 'write it as user@host or user@host:port'})
  }
  return {user: m[1], host: m[2].replace(/^\[|\]$/g, ''), port: m[3] ? Number(m[3]) : 22}
}

export interface ConnectOptions extends HostKeyPin {
  /** path of a private key (OpenSSH or PEM format), or the key itself */
  privateKey?: string | Buffer
  passphrase?: string
  /** a file whose first line is the private key's passphrase (never an argument) */
  passphraseFile?: string
  /** the flag that named privateKey, for messages (default --identity; a publish target's is --publish-identity) */
  identityFlag?: string
  /** an ssh-agent socket; default $SSH_AUTH_SOCK when no private key is given */
  agent?: string
  /** milliseconds between keepalive probes (0: none) */
  keepaliveInterval?: number
  /** milliseconds to wait for the handshake and authentication */
  readyTimeout?: number
  /** unanswered keepalives before the connection counts as dead (ssh2's default: 3) */
  keepaliveCountMax?: number
  /** a stream that already leads to the server (a guest's forwarded port on a validation host), instead of a TCP connection to host:port */
  sock?: Duplex
  /** an abort (Ctrl-C) ends a connect still in its handshake at once */
  signal?: AbortSignal
}

export interface ExecOptions {
  /** bytes for the command's stdin */
  input?: string | Buffer
  /** false: a non-zero exit is returned, not thrown */
  reject?: boolean
  onLine?: (line: string) => void
  signal?: AbortSignal
  /** the channel is closed and the call fails after this many milliseconds */
  timeoutMs?: number
}

export type {ExecResult} from '../util/exec.js'

export interface UploadOptions {
  /** continue a partial remote file whose prefix matches the local file (default true) */
  resume?: boolean
  /** don't send all-zero blocks: the remote file keeps holes there (default true) */
  sparse?: boolean
  onProgress?: (p: CopyProgress) => void
  signal?: AbortSignal
}

const CHUNK = 256 * 1024
/** requests kept in flight at once: one at a time is latency-bound */
const WRITES_IN_FLIGHT = 8
const READS_IN_FLIGHT = 16
const READ_CHUNK = 32 * 1024

function cb<T = void>(fn: (done: (err: Error | undefined | null, v?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))))
}

/**
 * The SSH server could not be reached or gave up before authentication (refused, timed out, reset):
 * the host is down, not lying. A pool of validation hosts skips such a host for the next one
 * (docs/host-pool.md); a host key refusal or a failed login is a HostError or InputError, never this.
 */
export class SshUnreachableError extends HostError {}

/** A command that runs while the caller holds its stdin open (SshSession.hold). */
export interface HeldCommand {
  /** the command's first line of output, or undefined when it ended without one */
  firstLine: Promise<string | undefined>
  /** its exit code (-1 without one) and its whole output once it ends */
  ended: Promise<{exitCode: number; output: string}>
  /** closes its stdin (EOF), then waits for its end */
  release(): Promise<{exitCode: number; output: string}>
}

/** One authenticated SSH connection: remote commands and SFTP file operations. */
export class SshSession {
  private sftpChannel?: Promise<SFTPWrapper>
  private hasher?: 'openssl' | 'sha256sum' | 'none'

  constructor(
    readonly address: SshAddress,
    private readonly client: ssh2.Client,
  ) {}

  get where(): string {
    return `${this.address.user}@${this.address.host}:${this.address.port}`
  }

  /**
   * Runs argv on the host; each argument is quoted for the remote shell. onLine sees each output line
   * as it comes (long remote jobs); an abort closes the channel, which ends the remote command.
   */
  async exec(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const command = shellQuote(argv)
    const stream = await cb<ClientChannel>((done) => this.client.exec(command, done))
    const out: Buffer[] = []
    const err: Buffer[] = []
    // one line buffer per stream, so stderr never splices into a half stdout line
    const pending = {out: '', err: ''}
    const feed = (which: 'out' | 'err', d: Buffer) => {
      if (!opts.onLine) return
      pending[which] += d.toString()
      let nl
      while ((nl = pending[which].indexOf('\n')) >= 0) {
        opts.onLine(pending[which].slice(0, nl))
        pending[which] = pending[which].slice(nl + 1)
      }
    }
    stream.on('data', (d: Buffer) => (out.push(d), feed('out', d)))
    stream.stderr.on('data', (d: Buffer) => (err.push(d), feed('err', d)))
    const onAbort = () => stream.close()
    opts.signal?.addEventListener('abort', onAbort, {once: true})
    let timedOut = false
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          timedOut = true
          stream.close()
        }, opts.timeoutMs)
      : undefined
    const exitCode = await new Promise<number>((resolve) => {
      let code = -1
      stream.on('exit', (c: number | null) => (code = c ?? -1))
      stream.on('close', () => resolve(code))
      stream.end(opts.input)
    })
    clearTimeout(timer)
    opts.signal?.removeEventListener('abort', onAbort)
    if (timedOut) throw new StageError(`on ${this.where}: \`${command.slice(0, 80)}\` timed out after ${opts.timeoutMs! / 1000} s`)
    for (const rest of [pending.out, pending.err]) if (rest && opts.onLine) opts.onLine(rest)
    const r = {exitCode, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString()}
    if (opts.signal?.aborted) throw new StageError(`on ${this.where}: \`${command}\` was cancelled`)
    if (exitCode !== 0 && opts.reject !== false) {
      throw new StageError(`on ${this.where}: \`${command}\` exited with ${exitCode}`, {details: r.stderr.trim().split('\n').slice(-10).map((l) => `  | ${l}`)})
    }
    return r
  }

  sftp(): Promise<SFTPWrapper> {
    this.sftpChannel ??= cb<SFTPWrapper>((done) => this.client.sftp(done)).catch((e) => {
      throw new HostError(`${this.where} offers no SFTP subsystem (${(e as Error).message})`, {hint: 'enable `Subsystem sftp` in the host\'s sshd_config'})
    })
    return this.sftpChannel
  }

  async stat(path: string): Promise<Stats | undefined> {
    const sftp = await this.sftp()
    try {
      return await cb<Stats>((done) => sftp.stat(path, done))
    } catch (e) {
      if ((e as {code?: number}).code === 2) return undefined // SSH_FX_NO_SUCH_FILE
      throw e
    }
  }

  async mkdirp(path: string): Promise<void> {
    const sftp = await this.sftp()
    const parts = path.split('/')
    for (let i = 1; i <= parts.length; i++) {
      const dir = parts.slice(0, i).join('/')
      if (!dir || dir === '~') continue
      const st = await this.stat(dir)
      if (st?.isDirectory()) continue
      if (st) throw new StageError(`on ${this.where}: ${dir} exists and is not a directory`)
      await cb((done) => sftp.mkdir(dir, done)).catch(async (e) => {
        if (!(await this.stat(dir))?.isDirectory()) throw e // a concurrent mkdir is fine
      })
    }
  }

  /** Renames, replacing `to` when the server has the posix-rename extension (OpenSSH does). */
  async rename(from: string, to: string): Promise<void> {
    const sftp = await this.sftp()
    try {
      await cb((done) => sftp.ext_openssh_rename(from, to, done))
    } catch (e) {
      if (!/not supported/i.test((e as Error).message)) throw e
      await cb((done) => sftp.rename(from, to, done))
    }
  }

  /**
   * Renames only if `to` does not exist, atomically (SFTP v3 rename: OpenSSH does link + unlink), so two
   * writers can never replace each other's file. Returns false, changing nothing, when `to` exists.
   */
  async renameNoClobber(from: string, to: string): Promise<boolean> {
    const sftp = await this.sftp()
    try {
      await cb((done) => sftp.rename(from, to, done))
      return true
    } catch (e) {
      if (await this.stat(to)) return false
      throw e
    }
  }

  /** Removes a file; a missing file is not an error. */
  async remove(path: string): Promise<void> {
    const sftp = await this.sftp()
    await cb((done) => sftp.unlink(path, done)).catch((e) => {
      if ((e as {code?: number}).code !== 2) throw e
    })
  }

  async list(dir: string): Promise<string[]> {
    const sftp = await this.sftp()
    try {
      const entries = await cb<{filename: string}[]>((done) => sftp.readdir(dir, done))
      return entries.map((e) => e.filename).sort()
    } catch (e) {
      if ((e as {code?: number}).code === 2) return []
      throw e
    }
  }

  async readFile(path: string): Promise<Buffer> {
    const sftp = await this.sftp()
    return cb<Buffer>((done) => sftp.readFile(path, done))
  }

  /** Writes a small file in one go (not atomic: callers write a temp name and rename). */
  async writeFile(path: string, data: string | Buffer): Promise<void> {
    const sftp = await this.sftp()
    await cb((done) => sftp.writeFile(path, data, done))
  }

  /**
   * How the host hashes files: openssl (uses SHA extensions, ~4x faster than coreutils here) or
   * sha256sum; none when the account runs no commands (an SFTP-only account), then we read back.
   */
  private async remoteHasher(): Promise<'openssl' | 'sha256sum' | 'none'> {
    if (this.hasher === undefined) {
      const probe = await this.exec(['sh', '-c', 'if openssl version >/dev/null 2>&1; then echo openssl; elif sha256sum --version >/dev/null 2>&1; then echo sha256sum; else echo none; fi'], {reject: false}).catch(() => undefined)
      const said = probe?.exitCode === 0 ? probe.stdout.trim() : 'none'
      this.hasher = said === 'openssl' || said === 'sha256sum' ? said : 'none'
    }
    return this.hasher
  }

  /**
   * sha256 of a remote file (or of its first `length` bytes): computed on the host (openssl or
   * sha256sum) when it runs commands, else read back over SFTP and hashed here.
   */
  async sha256(path: string, length?: number): Promise<string> {
    const hasher = await this.remoteHasher()
    if (hasher === 'none') return this.sha256ByReadBack(path, length)
    const hash = hasher === 'openssl' ? 'openssl dgst -sha256 -r' : 'sha256sum -b'
    const argv = length === undefined ? ['sh', '-c', `${hash} < "$1"`, 'sh', path] : ['sh', '-c', `head -c "$1" -- "$2" | ${hash}`, 'sh', String(length), path]
    const digest = (await this.exec(argv)).stdout.split(/\s/)[0]
    if (!/^[0-9a-f]{64}$/.test(digest)) throw new StageError(`on ${this.where}: ${hasher} printed no sha256 for ${path}`)
    return digest
  }

  async sha256ByReadBack(path: string, length?: number): Promise<string> {
    const sftp = await this.sftp()
    const handle = await cb<Buffer>((done) => sftp.open(path, 'r', done))
    const h = createHash('sha256')
    const readAt = (pos: number, want: number) =>
      new Promise<Buffer>((resolve, reject) => {
        const buf = Buffer.allocUnsafe(want)
        sftp.read(handle, buf, 0, want, pos, (err, bytes) => (err ? reject(err) : resolve(buf.subarray(0, bytes))))
      })
    try {
      const total = length ?? (await cb<Stats>((done) => sftp.fstat(handle, done))).size
      // a window of reads in flight: one at a time is bound by the round trip
      const window: {pos: number; want: number; data: Promise<Buffer>}[] = []
      let next = 0
      const fill = () => {
        while (window.length < READS_IN_FLIGHT && next < total) {
          const want = Math.min(READ_CHUNK, total - next)
          window.push({pos: next, want, data: readAt(next, want)})
          next += want
        }
      }
      fill()
      while (window.length > 0) {
        const {pos, want, data} = window.shift()!
        let got = await data
        // a short read (the server caps request sizes) is completed before moving on
        while (got.length < want) {
          const more = await readAt(pos + got.length, want - got.length)
          if (more.length === 0) throw new StageError(`on ${this.where}: ${path} ended at ${pos + got.length} bytes, expected ${total}`)
          got = Buffer.concat([got, more])
        }
        h.update(got)
        fill()
      }
    } finally {
      await cb((done) => sftp.close(handle, done))
    }
    return h.digest('hex')
  }


  /**
   * Uploads a local file to remotePath: resumable and sparse, as util/sparse-copy.ts does every
   * such copy (a matching partial remote file is continued; zero blocks stay holes).
   */
  async upload(localPath: string, remotePath: string, opts: UploadOptions = {}): Promise<SparseCopyResult> {
    const sftp = await this.sftp()
    const target: CopyTarget = {
      where: `${this.where}:${remotePath}`,
      existingSize: async () => {
        const st = await this.stat(remotePath)
        return st?.isFile() ? st.size : undefined
      },
      sha256Prefix: (bytes) => this.sha256(remotePath, bytes),
      open: async (keep) => {
        const handle = await cb<Buffer>((done) => sftp.open(remotePath, keep ? 'r+' : 'w', done))
        return {
          write: (buf, length, position) => cb((done) => sftp.write(handle, buf, 0, length, position, done)),
          finish: async (size) => {
            await cb((done) => sftp.fsetstat(handle, {size}, done))
            await cb((done) => sftp.ext_openssh_fsync(handle, (err) => done(err))).catch(() => undefined)
          },
          close: () => cb((done) => sftp.close(handle, done)).catch(() => undefined),
        }
      },
    }
    return copySparse(localPath, target, {
      ...opts,
      chunkBytes: CHUNK,
      inFlight: WRITES_IN_FLIGHT,
      cancelled: (from, to) => new StageError(`upload of ${from} to ${to} was cancelled`),
    })
  }

  /**
   * Checks that a remote file is exactly the local one (size, then sha256); throws a StageError
   * naming both digests when it is not.
   */
  async verify(remotePath: string, expectedSha256: string, expectedSize: number): Promise<void> {
    const st = await this.stat(remotePath)
    if (!st || st.size !== expectedSize) {
      throw new StageError(`on ${this.where}: ${remotePath} has ${st ? `${st.size} bytes` : 'gone missing'}, expected ${expectedSize} bytes`)
    }
    const got = await this.sha256(remotePath)
    if (got !== expectedSha256) {
      throw new StageError(`on ${this.where}: ${remotePath} has sha256 ${got}, expected ${expectedSha256}`, {hint: 'the transfer or the remote disk corrupted it; run the command again'})
    }
  }

  /** A TCP stream to host:port as seen from the SSH server (direct-tcpip), e.g. a QEMU hostfwd port there. */
  forwardOut(host: string, port: number): Promise<ClientChannel> {
    return cb<ClientChannel>((done) => this.client.forwardOut('127.0.0.1', 0, host, port, done)).catch((e) => {
      throw new HostError(`${this.where} refused a tunnel to ${host}:${port} (${(e as Error).message})`, {hint: "the host's sshd needs AllowTcpForwarding yes"})
    })
  }

  /**
   * Runs argv with its stdin left open until release(): a command that waits for EOF on stdin (a
   * lock keeper, src/validate/host-lock.ts) lives as long as the caller holds it, or this connection.
   */
  async hold(argv: readonly string[]): Promise<HeldCommand> {
    const stream = await cb<ClientChannel>((done) => this.client.exec(shellQuote(argv), done))
    let output = ''
    let lineDone: (l: string | undefined) => void
    const firstLine = new Promise<string | undefined>((r) => (lineDone = r))
    stream.on('data', (d: Buffer) => {
      output += d.toString()
      const nl = output.indexOf('\n')
      if (nl >= 0) lineDone(output.slice(0, nl))
    })
    stream.stderr.on('data', (d: Buffer) => (output += d.toString()))
    const ended = new Promise<{exitCode: number; output: string}>((resolve) => {
      let code = -1
      stream.on('exit', (c: number | null) => (code = c ?? -1))
      stream.on('close', () => {
        lineDone(undefined)
        resolve({exitCode: code, output})
      })
    })
    return {
      firstLine,
      ended,
      release: async () => {
        stream.end()
        return ended
      },
    }
  }

  /** Starts a command and returns without waiting for its end (kexec -e, poweroff): the link may drop. */
  fire(argv: readonly string[]): void {
    this.client.exec(shellQuote(argv), (err, stream) => {
      if (err) return
      stream.on('data', () => {})
      stream.stderr.on('data', () => {})
    })
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.client.once('close', () => resolve())
      this.client.end()
      setTimeout(resolve, 2000).unref()
    })
  }
}


/**
 * Connects and authenticates, refusing any host key that is not pinned (a SHA256 fingerprint or a
 * known_hosts entry). Auth: the private key given, else the ssh-agent.
 */
export async function connect(address: string | SshAddress, opts: ConnectOptions): Promise<SshSession> {
  const addr = typeof address === 'string' ? parseSshAddress(address) : address
  if (opts.hostKey) checkFingerprintSyntax(opts.hostKey)
  const flag = opts.identityFlag ?? '--identity'
  const agent = opts.privateKey ? opts.agent : (opts.agent ?? process.env.SSH_AUTH_SOCK)
  if (!opts.privateKey && !agent) {
    throw new InputError(`no SSH credentials for ${addr.user}@${addr.host}`, {hint: `pass a private key (${flag} ~/.ssh/id_ed25519) or start ssh-agent and ssh-add your key`})
  }
  let privateKey: Buffer | undefined
  if (Buffer.isBuffer(opts.privateKey)) privateKey = opts.privateKey
  else if (opts.privateKey) {
    const path = opts.privateKey.replace(/^~(?=\/)/, homedir())
    privateKey = readPrivateKeyFile(path, {flag})
  }
  const passphrase = opts.passphraseFile ? readPassphraseFile(opts.passphraseFile.replace(/^~(?=\/)/, homedir()), {flag: `${flag}-passphrase-file`}) : opts.passphrase
  if (privateKey) {
    // ssh2 would throw from inside connect: say here which key, and what to give
    const parsed = ssh2.utils.parseKey(privateKey, passphrase)
    if (parsed instanceof Error) {
      const what = Buffer.isBuffer(opts.privateKey) ? 'the SSH private key given' : `SSH private key ${opts.privateKey}`
      throw /encrypted|passphrase|decrypt/i.test(parsed.message)
        ? new InputError(`${what} ${passphrase ? 'cannot be opened with the passphrase given' : 'is encrypted'}`, {
            hint: passphrase ? 'check the first line of the passphrase file' : `load it into ssh-agent (ssh-add) and leave ${flag} out, or give its passphrase in a file: ${flag}-passphrase-file <file>`,
          })
        : new InputError(`${what} is not a private key ssh2 reads (${parsed.message})`, {hint: 'give an OpenSSH or PEM private key'})
    }
  }
  let refusal: HostError | undefined
  const serverHostKey = hostKeyAlgorithms(addr.host, addr.port, opts)
  const client = new ssh2.Client()
  const config: ConnectConfig = {
    host: addr.host,
    port: addr.port,
    username: addr.user,
    privateKey,
    passphrase,
    agent,
    keepaliveInterval: opts.keepaliveInterval ?? 15_000,
    ...(opts.keepaliveCountMax ? {keepaliveCountMax: opts.keepaliveCountMax} : {}),
    readyTimeout: opts.readyTimeout ?? 20_000,
    ...(opts.sock ? {sock: opts.sock} : {}),
    ...(serverHostKey ? {algorithms: {serverHostKey: serverHostKey as ssh2.ServerHostKeyAlgorithm[]}} : {}),
    hostVerifier: (key: Buffer) => {
      refusal = checkHostKey(addr.host, addr.port, key, opts)
      return refusal === undefined
    },
  }
  // A transport error can come after the one that settles the connect (a refused handshake is often
  // followed by ECONNRESET from the server): every error needs a listener for the client's whole life,
  // or Node treats it as uncaught. Later errors surface through the pending operation instead.
  client.on('error', () => undefined)
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error & {level?: string}) => {
      client.removeListener('ready', onReady)
      opts.signal?.removeEventListener('abort', onAbort)
      client.destroy()
      if (refusal) return reject(refusal)
      const where = `${addr.user}@${addr.host}:${addr.port}`
      if (serverHostKey && e.level === 'handshake' && /host key/i.test(e.message)) {
        return reject(new HostError(`${where} offers none of the host key types known_hosts holds for it (${serverHostKey.join(', ')}): refusing to connect`, {hint: `add the host's current key to ${opts.knownHostsFile ?? '~/.ssh/known_hosts'}, or pin it with --host-key SHA256:...`, cause: e}))
      }
      if (e.level === 'client-authentication') {
        return reject(new InputError(`SSH authentication as ${addr.user} at ${addr.host}:${addr.port} failed (${e.message})`, {hint: 'check that the key (or an agent key) is in the user\'s authorized_keys on the host'}))
      }
      reject(new SshUnreachableError(`cannot reach SSH server ${where}: ${e.message}`, {hint: 'check the host, the port and that sshd runs there', cause: e}))
    }
    const onAbort = () => {
      client.removeListener('ready', onReady)
      client.removeListener('error', onError)
      client.destroy()
      reject(new StageError(`connecting to ${addr.user}@${addr.host}:${addr.port} was cancelled`))
    }
    const onReady = () => {
      client.removeListener('error', onError)
      opts.signal?.removeEventListener('abort', onAbort)
      resolve()
    }
    if (opts.signal?.aborted) return onAbort()
    opts.signal?.addEventListener('abort', onAbort, {once: true})
    client.once('error', onError)
    client.once('ready', onReady)
    client.connect(config)
  })
  return new SshSession(addr, client)
}
