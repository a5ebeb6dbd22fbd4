import {execFile} from 'node:child_process'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {repoRoot} from './paths.js'

const exec = promisify(execFile)

export interface CliRun {
  code: number
  stdout: string
  stderr: string
}

/** Runs the built binary (bin/run.js) as a user or a pipeline would. */
export async function cli(args: string[], opts: {env?: Record<string, string>; timeoutMs?: number; cwd?: string} = {}): Promise<CliRun> {
  try {
    const r = await exec(process.execPath, [join(repoRoot, 'bin', 'run.js'), ...args], {
      cwd: opts.cwd ?? repoRoot,
      env: {...process.env, ...opts.env},
      timeout: opts.timeoutMs ?? 120_000,
      maxBuffer: 64 * 1024 * 1024,
    })
    return {code: 0, stdout: r.stdout, stderr: r.stderr}
  } catch (e) {
    const err = e as {code: number; stdout: string; stderr: string}
    return {code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout, stderr: err.stderr}
  }
}
