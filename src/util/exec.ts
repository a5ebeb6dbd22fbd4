import {execa, type Options as ExecaOptions} from 'execa'

import {HostError, StageError} from '../errors.js'

export interface RunOptions {
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
  /** what the command is for, used in the error message */
  what?: string
  hint?: string
  /** do not throw on a non-zero exit */
  reject?: boolean
}

export interface RunResult {
  exitCode: number
  stdout: string
  stderr: string
}

const TAIL_LINES = 30

/**
 * Runs a program with an argument array (never through a shell). A missing program is a
 * HostError naming it; a failure is a StageError with the last lines it printed.
 */
export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const execaOpts: ExecaOptions = {
    cwd: opts.cwd,
    env: opts.env,
    extendEnv: true,
    input: opts.input,
    timeout: opts.timeout,
    cancelSignal: opts.signal,
    reject: false,
    stripFinalNewline: true,
    all: true,
    forceKillAfterDelay: 5000,
    ...(opts.logFile ? {stdout: ['pipe', {file: opts.logFile, append: true}], stderr: ['pipe', {file: opts.logFile, append: true}]} : {}),
  }
  const child = execa(cmd, args, execaOpts)
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
  const r = await child
  if ((r as {code?: string}).code === 'ENOENT') {
    throw new HostError(`${cmd}: not found on this host${opts.what ? ` (needed to ${opts.what})` : ''}`, {
      hint: 'run `cvm-image doctor` to see which package provides it, or `cvm-image doctor --install` as root',
    })
  }
  const result: RunResult = {exitCode: r.exitCode ?? -1, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '')}
  if (r.isCanceled) throw new StageError(`${cmd} was cancelled`)
  if (r.timedOut) throw new StageError(`${cmd} timed out after ${opts.timeout} ms${opts.what ? ` (${opts.what})` : ''}`)
  if (result.exitCode !== 0 && opts.reject !== false) {
    const tail = String(r.all ?? '').split('\n').slice(-TAIL_LINES)
    throw new StageError(`${opts.what ? `${opts.what}: ` : ''}${cmd} ${args.join(' ')} exited with ${result.exitCode}${r.signal ? ` (${r.signal})` : ''}`, {
      details: tail.map((l) => `  | ${l}`),
      hint: opts.hint ?? (opts.logFile ? `full log: ${opts.logFile}` : undefined),
    })
  }
  return result
}

/** true when a program is on PATH */
export async function which(cmd: string): Promise<string | undefined> {
  const r = await execa('sh', ['-c', 'command -v "$1"', 'sh', cmd], {reject: false})
  return r.exitCode === 0 ? String(r.stdout).trim() : undefined
}
