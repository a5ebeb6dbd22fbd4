import {randomBytes} from 'node:crypto'
import {stat, writeFile} from 'node:fs/promises'
import {posix} from 'node:path'
import type {Duplex} from 'node:stream'

import {StageError} from '../errors.js'
import type {SshSession} from '../remote/ssh.js'
import {sha256File} from '../util/fsx.js'
import type {ExecResult} from '../util/exec.js'
import type {HostExecOptions, HostProcess, ValidationHost} from './host.js'

/**
 * A remote validation host over one pinned SSH connection: commands by exec, files by SFTP (the disk
 * with resume and a checksum check), the guest's hostfwd port by direct-tcpip through the same link.
 */
export class RemoteHost implements ValidationHost {
  readonly remote = true
  private readonly dirs: string[] = []
  private readonly processes = new Set<HostProcess>()
  private tmp?: Promise<string>

  constructor(private readonly session: SshSession) {}

  /** The host's temp directory as its own login sees it: $TMPDIR, else /tmp (what mktemp -t uses). */
  private tmpRoot(): Promise<string> {
    this.tmp ??= this.session.exec(['sh', '-c', 'printf %s "${TMPDIR:-/tmp}"'], {reject: false}).then((r) => (r.exitCode === 0 && r.stdout.startsWith('/') ? r.stdout : '/tmp'))
    return this.tmp
  }

  get label(): string {
    return this.session.where
  }

  async exec(cmd: string, args: readonly string[], opts: HostExecOptions = {}): Promise<ExecResult> {
    const p = this.session.exec([cmd, ...args], {reject: false})
    if (!opts.timeoutMs) return p
    let timer: NodeJS.Timeout
    return Promise.race([
      p.finally(() => clearTimeout(timer)),
      new Promise<ExecResult>((_, reject) => {
        timer = setTimeout(() => reject(new StageError(`${cmd} timed out after ${opts.timeoutMs} ms on ${this.label}`)), opts.timeoutMs)
      }),
    ])
  }

  async readFile(path: string): Promise<Buffer | undefined> {
    return this.session.readFile(path).catch(() => undefined)
  }

  async writeFile(path: string, data: Buffer | string): Promise<void> {
    await this.session.writeFile(path, data)
  }

  async tempDir(): Promise<string> {
    const r = await this.session.exec(['mktemp', '-d', posix.join(await this.tmpRoot(), 'cvm-validate-XXXXXXXX')])
    const dir = r.stdout.trim()
    this.dirs.push(dir)
    return dir
  }

  async putFile(localPath: string, hostPath: string, onProgress?: (done: number, total: number) => void, sha256?: string): Promise<void> {
    const [{size}, digest] = await Promise.all([stat(localPath), sha256 ?? sha256File(localPath)])
    await this.session.mkdirp(posix.dirname(hostPath))
    await this.session.upload(localPath, hostPath, {resume: true, onProgress: (p) => onProgress?.(p.done, p.total)})
    await this.session.verify(hostPath, digest, size)
  }

  async getFile(hostPath: string, localPath: string): Promise<void> {
    await writeFile(localPath, await this.session.readFile(hostPath))
  }

  /**
   * Runs the command through sh, which records its pid first: killing it must not depend on the
   * channel. The pid file lives in a directory of its own that sh creates with an unguessable name
   * (mkdir fails on anything already there, a planted symlink included) and mode 0700, so nobody
   * else on the host can point the write elsewhere or swap the pid that kill() will signal.
   */
  spawn(cmd: string, args: readonly string[]): HostProcess {
    // in the host's $TMPDIR (else /tmp), expanded there: kill() removes it, whether or not the process still runs
    const name = `cvm-validate-${randomBytes(16).toString('hex')}`
    const dir = 'd="${TMPDIR:-/tmp}/$0"; '
    const run = this.session.exec(['sh', '-c', `${dir}mkdir -m 0700 "$d" || exit 125; echo $$ > "$d/pid"; exec "$@"`, name, cmd, ...args], {reject: false})
    let out = ''
    const exited = run.then(
      (r) => {
        out = `${r.stdout}${r.stderr}`.slice(-4000)
        return r.exitCode
      },
      (e: Error) => {
        out = e.message
        return null
      },
    )
    const session = this.session
    const proc: HostProcess = {
      exited,
      output: () => out,
      async kill() {
        await session.exec(['sh', '-c', `${dir}test -s "$d/pid" && kill -9 "$(cat "$d/pid")" 2>/dev/null; rm -rf -- "$d"`, name], {reject: false}).catch(() => undefined)
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))])
      },
    }
    this.processes.add(proc)
    return proc
  }

  connectTcp(port: number): Promise<Duplex> {
    return this.session.forwardOut('127.0.0.1', port)
  }

  async freePort(): Promise<number> {
    const r = await this.session.exec(
      ['sh', '-c', 'for p in $(shuf -i 20000-60000 -n 30); do ss -Htln "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; exit 0; }; done; exit 1'],
      {reject: false},
    )
    const port = Number(r.stdout.trim())
    if (r.exitCode !== 0 || !port) throw new StageError(`found no free TCP port on ${this.label} (needs shuf and ss)`)
    return port
  }

  /** Kills what we started and removes every temp file there, then closes the connection. */
  async cleanup(): Promise<void> {
    for (const p of this.processes) await p.kill().catch(() => undefined)
    this.processes.clear()
    if (this.dirs.length > 0) await this.session.exec(['rm', '-rf', '--', ...this.dirs.splice(0)], {reject: false}).catch(() => undefined)
    await this.session.close()
  }
}
