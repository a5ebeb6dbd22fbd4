import {accessSync, closeSync, constants as fsConstants, existsSync, openSync, statSync} from 'node:fs'
import {constants} from 'node:os'
import {join} from 'node:path'

import {execa, type Options as ExecaOptions} from 'execa'

import {HostError, StageError} from '../errors.js'

export interface ExecOptions {
  cwd?: string
  env?: Record<string, string | undefined>
  /** text for stdin */
  input?: string | Buffer
  /** milliseconds; the process is killed after */
  timeout?: number
  signal?: AbortSignal
  /** called with each line the command prints (stdout and stderr) */
  onLine?: (line: string) => void
  /** append all output here (a build log) */
  logFile?: string
  /** write stdout to this file (created or emptied) instead of keeping it: for large or binary output */
  stdoutFile?: string
  /** what the command is for, used in the error message */
  what?: string
  hint?: string
  /** do not throw on a non-zero exit */
  reject?: boolean
}

/** What a command gave back, wherever it ran: here (run), on an SSH host, in a guest. */
export interface ExecResult {
  exitCode: number
  stdout: string
  stderr: string
}

const TAIL_LINES = 30
/** after SIGTERM, the group has this long to end before SIGKILL */
const KILL_AFTER_MS = 5000

/** PATH lookup without a process: the wrapper below would otherwise hide a missing program. */
function onPath(cmd: string, env: Record<string, string | undefined> | undefined): string | undefined {
  if (cmd.includes('/')) return existsSync(cmd) ? cmd : undefined
  for (const dir of (env?.PATH ?? process.env.PATH ?? '').split(':')) {
    if (!dir) continue
    const full = join(dir, cmd)
    try {
      accessSync(full, fsConstants.X_OK)
      if (statSync(full).isFile()) return full
    } catch {
      // not here
    }
  }
  return undefined
}

/**
 * How a child is kept inside the build (issue: an orphaned mmdebstrap ran on after cvm-image was
 * killed and left a chroot with proc, sysfs and devpts mounted). Every child starts in a process
 * group of its own (so a tool that signals its whole group, as mmdebstrap does on a full disk, cannot
 * hit cvm-image) under `setpriv --pdeathsig KILL`, so the kernel kills it when cvm-image dies, even by
 * SIGKILL. As root it also gets a PID and mount namespace of its own (`unshare --pid --kill-child`):
 * when the direct child dies, every process it started dies with it and every mount it made is gone.
 * Without root, a grandchild can outlive a SIGKILL of cvm-image; on every other path the whole group
 * is killed.
 */
export function containedArgv(cmd: string, args: readonly string[]): [string, string[]] {
  if (process.platform !== 'linux') return [cmd, [...args]]
  const inner = process.getuid?.() === 0 ? ['unshare', '--pid', '--fork', '--kill-child', '--mount-proc', '--', 'sh', '-c', REAPER, 'sh', cmd, ...args] : [cmd, ...args]
  return ['setpriv', ['--pdeathsig', 'KILL', '--', ...inner]]
}

/**
 * PID 1 of the namespace: the orphans of the command are re-parented to it, and a PID 1 that does
 * not reap them leaves zombies that still answer `kill` (fakeroot then waits forever for its dead
 * faked, found when node ran as PID 1). sh reaps every child while it waits for the command, passes
 * stdin on (an asynchronous list would get /dev/null) and exits with the command's status.
 */
const REAPER = 'exec 3<&0; "$@" <&3 3<&- & wait $!'

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return
  try {
    process.kill(-pid, signal)
  } catch {
    // the group is gone
  }
}

const NO_SPACE = /No space left on device|ENOSPC/

/** a shell reports a command killed by signal N as exit 128+N */
function signalName(code: number): string {
  if (code <= 128 || code > 128 + 64) return ''
  const name = Object.entries(constants.signals).find(([, n]) => n === code - 128)?.[0]
  return name ? ` (${name})` : ''
}

/**
 * Runs a program with an argument array (never through a shell), contained as containedArgv() says.
 * A missing program is a HostError naming it; a failure is a StageError with the last lines it
 * printed; a full disk says so. Abort and timeout end the child's whole group: SIGTERM, then SIGKILL
 * after 5 s; once the child has ended, whatever is left of its group is killed too.
 */
export async function run(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  if (!onPath(cmd, opts.env)) {
    throw new HostError(`${cmd}: not found on this host${opts.what ? ` (needed to ${opts.what})` : ''}`, {
      hint: 'run `cvm-image doctor` to see which package provides it, or `cvm-image doctor --install` as root',
    })
  }
  if (opts.signal?.aborted) throw new StageError(`${cmd} was cancelled`)
  // the child writes to the file itself: execa's {file} target would also keep a copy in memory
  const outFd = opts.stdoutFile ? openSync(opts.stdoutFile, 'w') : undefined
  const execaOpts: ExecaOptions = {
    cwd: opts.cwd,
    env: opts.env,
    extendEnv: true,
    input: opts.input,
    detached: true,
    reject: false,
    stripFinalNewline: true,
    all: true,
    ...(opts.logFile ? {stdout: ['pipe', {file: opts.logFile, append: true}], stderr: ['pipe', {file: opts.logFile, append: true}]} : {}),
  }
  if (outFd !== undefined) Object.assign(execaOpts, {stdout: outFd})
  const [file, argv] = containedArgv(cmd, args)
  let child
  try {
    child = execa(file, argv, execaOpts)
  } finally {
    if (outFd !== undefined) closeSync(outFd)
  }
  let ended: 'cancelled' | 'timed out' | undefined
  let hardKill: NodeJS.Timeout | undefined
  const stop = (why: 'cancelled' | 'timed out') => {
    if (ended) return
    ended = why
    killGroup(child.pid, 'SIGTERM')
    hardKill = setTimeout(() => killGroup(child.pid, 'SIGKILL'), KILL_AFTER_MS)
  }
  const onAbort = () => stop('cancelled')
  opts.signal?.addEventListener('abort', onAbort, {once: true})
  const timer = opts.timeout ? setTimeout(() => stop('timed out'), opts.timeout) : undefined
  if (opts.onLine) {
    const onLine = opts.onLine
    let buf = ''
    const feed = (chunk: Buffer | string) => {
      buf += chunk.toString()
      let nl
      while ((nl = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, nl))
        buf = buf.slice(nl + 1)
      }
    }
    child.stdout?.on('data', feed)
    child.stderr?.on('data', feed)
  }
  let r
  try {
    r = await child
  } finally {
    opts.signal?.removeEventListener('abort', onAbort)
    clearTimeout(timer)
    clearTimeout(hardKill)
    killGroup(child.pid, 'SIGKILL')
  }
  const result: ExecResult = {exitCode: r.exitCode ?? -1, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '')}
  if (ended === 'cancelled') throw new StageError(`${cmd} was cancelled`)
  if (ended === 'timed out') throw new StageError(`${cmd} timed out after ${opts.timeout} ms${opts.what ? ` (${opts.what})` : ''}`)
  if (result.exitCode !== 0 && opts.reject !== false) {
    const output = String(r.all ?? '')
    const tail = output.split('\n').slice(-TAIL_LINES)
    const how = `${cmd} ${args.join(' ')} ${r.signal ? `was killed by ${r.signal}` : `exited with ${result.exitCode}${signalName(result.exitCode)}`}`
    if (NO_SPACE.test(output)) {
      throw new StageError(`${opts.what ? `${opts.what}: ` : ''}no space left on device (${how})`, {
        details: tail.map((l) => `  | ${l}`),
        hint: `free space where it writes${opts.cwd ? ` (${opts.cwd})` : ''} and in the cache directory, then run it again${opts.logFile ? `; full log: ${opts.logFile}` : ''}`,
      })
    }
    throw new StageError(`${opts.what ? `${opts.what}: ` : ''}${how}`, {
      details: tail.map((l) => `  | ${l}`),
      hint: opts.hint ?? (opts.logFile ? `full log: ${opts.logFile}` : undefined),
    })
  }
  return result
}

/** the path of a program on PATH (the same lookup run() makes before it starts one) */
export async function which(cmd: string): Promise<string | undefined> {
  return onPath(cmd, undefined)
}
