import type {ValidationMode} from '../recipe/schema.js'
import type {CheckResult} from './check-types.js'

export type ValidationVerdict = 'passed' | 'failed' | 'skipped'

export interface ModeReport {
  mode: ValidationMode
  /** which boot: <mode>, <mode>-disk-boot for the boot from the disk alone, <mode>-secure-boot for that boot under Secure Boot */
  boot: string
  /** the host it ran on: local, or user@host:port (with a pool, each boot's own: docs/host-pool.md) */
  host?: string
  accel: 'tcg' | 'kvm'
  /** how the guest got its NoCloud seed */
  seed: string
  /** QEMU start to the guest's SSH answering (first boot of the mode) */
  bootToSshMs?: number
  serialLog: string
  qemuArgs: string[]
}

export interface ValidationReport {
  verdict: ValidationVerdict
  image: {path: string; sha256Before: string; sha256After?: string; ukiSha256: string; ukiCmdline: string}
  /** where the boots ran: local, the one host, or the hosts of a pool that ran one (comma-separated; each boot's host is in modes) */
  host: string
  modes: ModeReport[]
  checks: CheckResult[]
  timings: {totalMs: number; bootToSshMs?: number}
  startedAt: string
}

/** passed: something passed and nothing failed; failed: any fail; skipped: nothing ran. */
export function overallVerdict(checks: CheckResult[]): ValidationVerdict {
  if (checks.some((c) => c.verdict === 'fail')) return 'failed'
  return checks.some((c) => c.verdict === 'pass') ? 'passed' : 'skipped'
}

const xml = (s: string) => s.replace(/[<>&"']/g, (c) => ({'<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;'})[c]!).replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '')

/** JUnit XML: one testsuite per mode, one testcase per check; skip -> <skipped>, fail -> <failure>. */
export function junitXml(report: ValidationReport): string {
  const modes = [...new Set(report.checks.map((c) => c.mode))]
  const suites = modes.map((mode) => {
    const cs = report.checks.filter((c) => c.mode === mode)
    const secs = (ms: number) => (ms / 1000).toFixed(3)
    const cases = cs.map((c) => {
      const head = `    <testcase classname="cvm-image.validate.${xml(mode)}" name="${xml(c.name)}" time="${secs(c.durationMs)}">`
      const body =
        c.verdict === 'fail'
          ? `\n      <failure message="${xml(c.evidence)}"/>\n    `
          : c.verdict === 'skip'
            ? `\n      <skipped message="${xml(c.evidence)}"/>\n    `
            : `\n      <system-out>${xml(c.evidence)}</system-out>\n    `
      return `${head}${body}</testcase>`
    })
    const failures = cs.filter((c) => c.verdict === 'fail').length
    const skipped = cs.filter((c) => c.verdict === 'skip').length
    const time = cs.reduce((a, c) => a + c.durationMs, 0)
    return `  <testsuite name="validate.${xml(mode)}" tests="${cs.length}" failures="${failures}" errors="0" skipped="${skipped}" time="${secs(time)}" timestamp="${xml(report.startedAt)}">\n${cases.join('\n')}\n  </testsuite>`
  })
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="cvm-image validate" tests="${report.checks.length}" failures="${report.checks.filter((c) => c.verdict === 'fail').length}">\n${suites.join('\n')}\n</testsuites>\n`
}
