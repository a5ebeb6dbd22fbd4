import type {BuildRecord} from '../pipeline/build-record.js'
import type {ValidationSummary} from './validation-gate.js'

export const VALIDATION_STATEMENT_NAME = 'validation.intoto.json'
/** how to read the predicate: where and how the disk was validated */
export const VALIDATION_PREDICATE_TYPE = 'urn:cvm-image:predicate:validation:v1'

/** An in-toto Statement v1 binding the disk's sha256 to its validation: mode, host kind, each verdict, the marker line. */
export interface ValidationStatement {
  _type: 'https://in-toto.io/Statement/v1'
  subject: {name: string; digest: {sha256: string}}[]
  predicateType: typeof VALIDATION_PREDICATE_TYPE
  predicate: {
    validator: {id: string; version: Record<string, string>}
    status: ValidationSummary['status']
    allowedUnvalidated: boolean
    modes: string[]
    /** local or remote (where QEMU ran); "unrecorded" when validation ran nowhere */
    hostKind: string
    when?: string
    kernel: {release?: string; version?: string}
    boot: {ukiSha256?: string; cmdline?: string}
    /** the series' marker line each boot printed (the marker check's evidence), by mode */
    marker: {mode: string; verdict: string; line?: string}[]
    checks: {mode: string; name: string; verdict: string; evidence?: string}[]
    /** the validate stage's cache key: its report.json, junit.xml and serial.log */
    validateStage?: string
  }
}

/** Built from the build record alone, so the same build always gives the same statement. */
export function buildValidationStatement(record: BuildRecord, diskSha256: string, validation: ValidationSummary): ValidationStatement {
  const v = record.stages.validate
  const checks = (v?.meta.checks ?? []).map((c) => ({mode: c.mode, name: c.name, verdict: c.verdict, evidence: c.evidence}))
  const compile = record.stages.compile?.meta
  const assemble = record.stages.assemble?.meta
  return {
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{name: 'disk.raw', digest: {sha256: diskSha256}}],
    predicateType: VALIDATION_PREDICATE_TYPE,
    predicate: {
      validator: {id: 'urn:cvm-image:validator:qemu', version: {'cvm-image': record.toolVersion}},
      status: validation.status,
      allowedUnvalidated: validation.allowedUnvalidated,
      modes: validation.modes,
      hostKind: validation.hostKind ?? 'unrecorded',
      when: validation.when,
      kernel: {release: compile?.release, version: compile?.version},
      boot: {ukiSha256: assemble?.ukiSha256, cmdline: assemble?.cmdline},
      marker: checks.filter((c) => c.name === 'marker').map((c) => ({mode: c.mode, verdict: c.verdict, line: c.verdict === 'pass' ? c.evidence : undefined})),
      checks,
      validateStage: v?.key,
    },
  }
}
