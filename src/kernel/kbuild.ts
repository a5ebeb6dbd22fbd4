import {run, type ExecResult} from '../util/exec.js'

/** The architecture every build targets (the only one CVM images need here). */
export const KBUILD_ARCH = 'x86_64'

export interface MakeOptions {
  /** the source tree */
  tree: string
  /** the object directory (O=) */
  objdir: string
  targets: string[]
  /** VAR=value arguments for make */
  vars?: Record<string, string>
  env?: Record<string, string>
  jobs?: number
  logFile?: string
  signal?: AbortSignal
  onLine?: (line: string) => void
  what: string
  hint?: string
}

/** make in a kernel tree, out of tree (O=), with argument arrays only. */
export function kmake(o: MakeOptions): Promise<ExecResult> {
  const vars = Object.entries({ARCH: KBUILD_ARCH, ...o.vars}).map(([k, v]) => `${k}=${v}`)
  return run('make', ['-C', o.tree, `O=${o.objdir}`, ...(o.jobs ? [`-j${o.jobs}`] : []), ...vars, ...o.targets], {
    env: o.env,
    logFile: o.logFile,
    signal: o.signal,
    onLine: o.onLine,
    what: o.what,
    hint: o.hint,
  })
}
