import {CvmError, InterruptedError} from '../errors.js'

export interface InterruptOptions {
  /** what was stopped, for the error (e.g. "build of debian-12") */
  what: string
  /** what the user can do next, e.g. that a rerun resumes */
  hint?: string
}

/**
 * The one interrupt path of every command: SIGINT or SIGTERM aborts the signal the work is given, and
 * whatever the work then throws ends as "<what> was interrupted" with exit code 130 (README "Exit
 * codes"). A second signal quits at once with 130.
 */
export async function runInterruptible<T>(work: (signal: AbortSignal) => Promise<T>, opts: InterruptOptions): Promise<T> {
  const abort = new AbortController()
  const onSignal = (sig: NodeJS.Signals) => {
    if (abort.signal.aborted) process.exit(130)
    process.stderr.write(`\ncvm-image: ${sig}: stopping (again to quit at once)\n`)
    abort.abort()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    return await work(abort.signal)
  } catch (e) {
    if (!abort.signal.aborted || e instanceof InterruptedError) throw e
    const cause = e instanceof CvmError ? e.message : (e as Error)?.message
    throw new InterruptedError(`${opts.what} was interrupted`, {hint: opts.hint, details: cause ? [`  (${cause})`] : [], cause: e})
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
