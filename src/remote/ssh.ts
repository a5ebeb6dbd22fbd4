import {createHash} from 'node:crypto'
import {open as openLocal, readFile, stat as statLocal} from 'node:fs/promises'
import {homedir} from 'node:os'

import ssh2 from 'ssh2'
import type {ClientChannel, ConnectConfig, SFTPWrapper, Stats} from 'ssh2'

import {HostError, InputError, StageError} from '../errors.js'
import {checkFingerprintSyntax, checkHostKey, type HostKeyPin} from './host-key.js'
import {shellQuote} from './quote.js'

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
  /** path of a private key (OpenSSH or PEM format) */
  privateKey?: string
  passphrase?: string
  /** an ssh-agent socket; default $SSH_AUTH_SOCK when no private key is given */
  agent?: string
  /** milliseconds between keepalive probes (0: none) */
  keepaliveInterval?: number
  /** milliseconds to wait for the handshake and authentication */
  readyTimeout?: number
}

export interface ExecResult {
  exitCode: number
  stdout: string
  stderr: string
}

export interface UploadProgress {
  /** bytes of the local file handled so far (sent, or skipped as zeros, or already there) */
  done: number
  total: number
}

export interface UploadOptions {
  /** continue a partial remote file whose prefix matches the local file (default true) */
  resume?: boolean
  /** don't send all-zero blocks: the remote file keeps holes there (default true) */
  sparse?: boolean
  onProgress?: (p: UploadProgress) => void
  signal?: AbortSignal
}

export interface UploadResult {
  /** bytes put on the wire */
  bytesSent: number
  /** where the upload started: the length of a matching partial remote file */
  resumedFrom: number
  size: number
}

const CHUNK = 256 * 1024
/** writes kept in flight at once: localhost is latency-bound with one */
const WRITES_IN_FLIGHT = 8

function cb<T = void>(fn: (done: (err: Error | undefined | null, v?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))))
}

const ZEROS = Buffer.alloc(CHUNK)

function isAllZero(buf: Buffer, len: number): boolean {
  return buf.subarray(0, len).equals(ZEROS.subarray(0, len))
}

/** One authenticated SSH connection: remote commands and SFTP file operations. */
export class SshSession {
  private sftpChannel?: Promise<SFTPWrapper>
  private canExec?: boolean

  constructor(
    readonly address: SshAddress,
    private readonly client: ssh2.Client,
  ) {}

  get where(): string {
    return `${this.address.user}@${this.address.host}:${this.address.port}`
  }

  /** Runs argv on the host; each argument is quoted for the remote shell. */
  async exec(argv: readonly string[], opts: {input?: string | Buffer; reject?: boolean} = {}): Promise<ExecResult> {
    const command = shellQuote(argv)
    const stream = await cb<ClientChannel>((done) => this.client.exec(command, done))
    const out: Buffer[] = []
    const err: Buffer[] = []
    stream.on('data', (d: Buffer) => out.push(d))
    stream.stderr.on('data', (d: Buffer) => err.push(d))
    const exitCode = await new Promise<number>((resolve) => {
      let code = -1
      stream.on('exit', (c: number | null) => (code = c ?? -1))
      stream.on('close', () => resolve(code))
      stream.end(opts.input)
    })
    const r = {exitCode, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString()}
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

  /** true when the host runs commands for us (an SFTP-only account does not) */
  async hasExec(): Promise<boolean> {
    if (this.canExec === undefined) {
      const r = await this.exec(['sha256sum', '--version'], {reject: false}).catch(() => undefined)
      this.canExec = r?.exitCode === 0
    }
    return this.canExec
  }

  /**
   * sha256 of a remote file (or of its first `length` bytes): computed on the host with sha256sum when
   * it runs commands, else read back over SFTP and hashed here.
   */
  async sha256(path: string, length?: number): Promise<string> {
    if (await this.hasExec()) {
      const argv = length === undefined ? ['sha256sum', '-b', '--', path] : ['sh', '-c', 'head -c "$1" -- "$2" | sha256sum -b', 'sh', String(length), path]
      const r = await this.exec(argv)
      return r.stdout.split(/\s/)[0]
    }
    return this.sha256ByReadBack(path, length)
  }

  async sha256ByReadBack(path: string, length?: number): Promise<string> {
    const sftp = await this.sftp()
    const handle = await cb<Buffer>((done) => sftp.open(path, 'r', done))
    const h = createHash('sha256')
    try {
      const total = length ?? (await cb<Stats>((done) => sftp.fstat(handle, done))).size
      const buf = Buffer.alloc(CHUNK)
      for (let pos = 0; pos < total; ) {
        const want = Math.min(CHUNK, total - pos)
        const n = await new Promise<number>((resolve, reject) => sftp.read(handle, buf, 0, want, pos, (err, bytes) => (err ? reject(err) : resolve(bytes))))
        if (n <= 0) break
        h.update(buf.subarray(0, n))
        pos += n
      }
    } finally {
      await cb((done) => sftp.close(handle, done))
    }
    return h.digest('hex')
  }

  /**
   * Uploads a local file to remotePath. With resume, a partial remote file whose bytes match the local
   * prefix (sha256 of that prefix compared) is continued from its end; any other content is overwritten.
   * All-zero blocks are skipped (sparse) and the size is set at the end, so holes stay holes.
   */
  async upload(localPath: string, remotePath: string, opts: UploadOptions = {}): Promise<UploadResult> {
    const sftp = await this.sftp()
    const size = (await statLocal(localPath)).size
    let start = 0
    const existing = opts.resume === false ? undefined : await this.stat(remotePath)
    if (existing?.isFile() && existing.size > 0 && existing.size <= size) {
      const [remote, local] = await Promise.all([this.sha256(remotePath, existing.size), sha256OfPrefix(localPath, existing.size)])
      if (remote === local) start = existing.size
    }
    const handle = await cb<Buffer>((done) => sftp.open(remotePath, start > 0 ? 'r+' : 'w', done))
    const local = await openLocal(localPath, 'r')
    let bytesSent = 0
    try {
      const inFlight = new Set<Promise<void>>()
      let failure: unknown
      for (let pos = start; pos < size; pos += CHUNK) {
        if (opts.signal?.aborted) throw new StageError(`upload of ${localPath} to ${this.where}:${remotePath} was cancelled`)
        const buf = Buffer.allocUnsafe(CHUNK)
        const {bytesRead} = await local.read(buf, 0, Math.min(CHUNK, size - pos), pos)
        if (bytesRead === 0) break
        if (!(opts.sparse !== false && isAllZero(buf, bytesRead))) {
          const p = cb((done) => sftp.write(handle, buf, 0, bytesRead, pos, done)).catch((e) => void (failure ??= e))
          inFlight.add(p)
          void p.finally(() => inFlight.delete(p))
          bytesSent += bytesRead
          if (inFlight.size >= WRITES_IN_FLIGHT) await Promise.race(inFlight)
          if (failure) throw failure
        }
        opts.onProgress?.({done: pos + bytesRead, total: size})
      }
      await Promise.all(inFlight)
      if (failure) throw failure
      // the trailing hole (or truncation of longer stale content) comes from setting the size
      await cb((done) => sftp.fsetstat(handle, {size}, done))
      await cb((done) => sftp.ext_openssh_fsync(handle, (err) => done(err))).catch(() => undefined)
      if (size === start) opts.onProgress?.({done: size, total: size})
    } finally {
      await local.close()
      await cb((done) => sftp.close(handle, done)).catch(() => undefined)
    }
    return {bytesSent, resumedFrom: start, size}
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
    return cb<ClientChannel>((done) => this.client.forwardOut('127.0.0.1', 0, host, port, done))
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.client.once('close', () => resolve())
      this.client.end()
      setTimeout(resolve, 2000).unref()
    })
  }
}

async function sha256OfPrefix(path: string, length: number): Promise<string> {
  const h = createHash('sha256')
  const fh = await openLocal(path, 'r')
  try {
    const buf = Buffer.allocUnsafe(1024 * 1024)
    for (let pos = 0; pos < length; ) {
      const {bytesRead} = await fh.read(buf, 0, Math.min(buf.length, length - pos), pos)
      if (bytesRead === 0) break
      h.update(buf.subarray(0, bytesRead))
      pos += bytesRead
    }
  } finally {
    await fh.close()
  }
  return h.digest('hex')
}

/**
 * Connects and authenticates, refusing any host key that is not pinned (a SHA256 fingerprint or a
 * known_hosts entry). Auth: the private key given, else the ssh-agent.
 */
export async function connect(address: string | SshAddress, opts: ConnectOptions): Promise<SshSession> {
  const addr = typeof address === 'string' ? parseSshAddress(address) : address
  if (opts.hostKey) checkFingerprintSyntax(opts.hostKey)
  const agent = opts.privateKey ? opts.agent : (opts.agent ?? process.env.SSH_AUTH_SOCK)
  if (!opts.privateKey && !agent) {
    throw new InputError(`no SSH credentials for ${addr.user}@${addr.host}`, {hint: 'pass a private key (--identity ~/.ssh/id_ed25519) or start ssh-agent and ssh-add your key'})
  }
  let privateKey: Buffer | undefined
  if (opts.privateKey) {
    const path = opts.privateKey.replace(/^~(?=\/)/, homedir())
    privateKey = await readFile(path).catch((e) => {
      throw new InputError(`cannot read SSH private key ${path}: ${(e as Error).message}`, {hint: 'give the path of a readable private key file'})
    })
  }
  let refusal: HostError | undefined
  const client = new ssh2.Client()
  const config: ConnectConfig = {
    host: addr.host,
    port: addr.port,
    username: addr.user,
    privateKey,
    passphrase: opts.passphrase,
    agent,
    keepaliveInterval: opts.keepaliveInterval ?? 15_000,
    readyTimeout: opts.readyTimeout ?? 20_000,
    hostVerifier: (key: Buffer) => {
      refusal = checkHostKey(addr.host, addr.port, key, opts)
      return refusal === undefined
    },
  }
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error & {level?: string}) => {
      client.removeListener('ready', onReady)
      if (refusal) return reject(refusal)
      const where = `${addr.user}@${addr.host}:${addr.port}`
      if (e.level === 'client-authentication') {
        return reject(new InputError(`SSH authentication as ${addr.user} at ${addr.host}:${addr.port} failed (${e.message})`, {hint: 'check that the key (or an agent key) is in the user\'s authorized_keys on the host'}))
      }
      reject(new HostError(`cannot reach SSH server ${where}: ${e.message}`, {hint: 'check the host, the port and that sshd runs there', cause: e}))
    }
    const onReady = () => {
      client.removeListener('error', onError)
      resolve()
    }
    client.once('error', onError)
    client.once('ready', onReady)
    client.connect(config)
  })
  // later transport errors surface through the pending operation; don't crash the process on them
  client.on('error', () => undefined)
  return new SshSession(addr, client)
}
