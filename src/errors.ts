/**
 * Typed errors. Every error a user can see says what failed, where, and what to do next.
 * The exit code tells a pipeline which kind of failure it was (see README "Exit codes").
 */
export const ExitCode = {
  ok: 0,
  /** a stage ran and failed: build, validation or publish */
  failure: 1,
  /** bad input or usage: recipe, flags, patch series, hostile archive */
  input: 2,
  /** the host lacks a tool or capability the request needs */
  host: 3,
  /** publish refused: different bytes under an existing version, unvalidated image */
  conflict: 4,
  /** interrupted by a signal */
  interrupted: 130,
  /** our bug */
  bug: 70,
} as const
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode]

export class CvmError extends Error {
  readonly exitCode: ExitCodeValue
  /** what the user can do next */
  readonly hint?: string
  /** extra lines (one problem each), e.g. every recipe error at once */
  readonly details: string[]

  constructor(message: string, opts: {exitCode: ExitCodeValue; hint?: string; details?: string[]; cause?: unknown}) {
    super(message, {cause: opts.cause})
    this.name = new.target.name
    this.exitCode = opts.exitCode
    this.hint = opts.hint
    this.details = opts.details ?? []
  }

  /** The text shown to a person: message, detail lines, then the hint. */
  render(): string {
    const lines = [this.message, ...this.details]
    if (this.hint) lines.push(`hint: ${this.hint}`)
    return lines.join('\n')
  }
}

/** Bad input the user can fix (recipe, flags, archive, patch). */
export class InputError extends CvmError {
  constructor(message: string, opts: {hint?: string; details?: string[]; cause?: unknown} = {}) {
    super(message, {...opts, exitCode: ExitCode.input})
  }
}

/** A stage that ran and failed (build, validation, publish transport). */
export class StageError extends CvmError {
  constructor(message: string, opts: {hint?: string; details?: string[]; cause?: unknown} = {}) {
    super(message, {...opts, exitCode: ExitCode.failure})
  }
}

/** The host lacks a tool or a capability (SEV, KVM, a package). */
export class HostError extends CvmError {
  constructor(message: string, opts: {hint?: string; details?: string[]; cause?: unknown} = {}) {
    super(message, {...opts, exitCode: ExitCode.host})
  }
}

/** A publish that would overwrite or mislabel a release. */
export class ConflictError extends CvmError {
  constructor(message: string, opts: {hint?: string; details?: string[]; cause?: unknown} = {}) {
    super(message, {...opts, exitCode: ExitCode.conflict})
  }
}

/** Work stopped by SIGINT or SIGTERM (Ctrl-C). */
export class InterruptedError extends CvmError {
  constructor(message: string, opts: {hint?: string; details?: string[]; cause?: unknown} = {}) {
    super(message, {...opts, exitCode: ExitCode.interrupted})
  }
}

/** Something that should not happen: a bug in cvm-image. */
export class BugError extends CvmError {
  constructor(message: string, opts: {cause?: unknown} = {}) {
    super(message, {...opts, exitCode: ExitCode.bug, hint: 'this is a bug in cvm-image; please report it with the command and its output'})
  }
}

export function isCvmError(e: unknown): e is CvmError {
  return e instanceof CvmError
}
