import {ConflictError} from '../errors.js'
import type {BuildRecord} from '../pipeline/build-record.js'
import type {CheckVerdict} from '../validate/check-types.js'

/** What the build's validation says about the image, as the manifest records it. */
export interface ValidationSummary {
  /** passed: validate ran and passed; failed: it ran and something failed; not-run: missing or all skipped */
  status: 'passed' | 'failed' | 'not-run'
  /** the image was published although status is not passed */
  allowedUnvalidated: boolean
  modes: string[]
  /** when validation finished, as the validate stage recorded it (cached with it, so stable across rebuilds) */
  when?: string
  /** where QEMU ran, as validate recorded it (local or remote); "unrecorded" when validation was skipped and ran nowhere */
  hostKind?: string
  checks: {mode: string; name: string; verdict: CheckVerdict}[]
}

export function summarizeValidation(record: BuildRecord): Omit<ValidationSummary, 'allowedUnvalidated'> {
  const v = record.stages.validate
  if (!v) return {status: 'not-run', modes: [], checks: []}
  const meta = v.meta
  const checks = meta.checks.map((c) => ({mode: c.mode, name: c.name, verdict: c.verdict}))
  // a "passed" verdict with a failing check, or with nothing that passed, is not trusted as passed
  const anyFail = checks.some((c) => c.verdict === 'fail')
  const anyPass = checks.some((c) => c.verdict === 'pass')
  const status = meta.verdict === 'passed' && !anyFail && anyPass ? 'passed' : meta.verdict === 'skipped' || (!anyFail && !anyPass) ? 'not-run' : 'failed'
  return {
    status,
    modes: [...meta.modes],
    when: meta.when,
    hostKind: meta.hostKind ?? 'unrecorded',
    checks,
  }
}

/** Refuses an image whose validation failed or did not run, unless the user allows it (and the manifest says so). */
export function gateOnValidation(record: BuildRecord, allowUnvalidated: boolean): ValidationSummary {
  const s = summarizeValidation(record)
  if (s.status === 'passed') return {...s, allowedUnvalidated: false}
  if (allowUnvalidated) return {...s, allowedUnvalidated: true}
  const failed = s.checks.filter((c) => c.verdict === 'fail')
  throw new ConflictError(
    s.status === 'failed'
      ? `refusing to publish ${record.recipeId}: its validation failed${failed.length ? ` (${failed.length} check${failed.length > 1 ? 's' : ''} failed)` : ''}`
      : `refusing to publish ${record.recipeId}: its image was not validated${record.stages.validate ? ' (every check was skipped)' : ' (the build has no validate stage)'}`,
    {
      details: failed.map((c) => `  ${c.mode}/${c.name}: fail`),
      hint: `fix the image and run \`cvm-image build ${record.recipeId}\` again, or pass --allow-unvalidated (the manifest records that it was not validated)`,
    },
  )
}
