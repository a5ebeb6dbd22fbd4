import {describe, expect, it} from 'vitest'

import {junitXml, overallVerdict, type ValidationReport} from './report.js'

describe('reports', () => {
  const checks = [
    {mode: 'emulated' as const, name: 'kernel', verdict: 'pass' as const, evidence: 'uname -r: 6.1.0-cvm', durationMs: 1200},
    {mode: 'emulated' as const, name: 'memory-encryption', verdict: 'skip' as const, evidence: 'emulated mode: <no SEV> & "TCG"', durationMs: 3},
    {mode: 'emulated' as const, name: 'nvme-integrity', verdict: 'fail' as const, evidence: 'MISMATCH', durationMs: 9000},
  ]
  it('overall verdict: any fail fails; skips alone are skipped, never passed', () => {
    expect(overallVerdict(checks)).toBe('failed')
    expect(overallVerdict(checks.slice(0, 2))).toBe('passed')
    expect(overallVerdict(checks.slice(1, 2))).toBe('skipped')
  })

  it('JUnit: one testcase per check, skipped and failure elements, escaped evidence', () => {
    const r = {checks, startedAt: '2026-01-01T00:00:00.000Z'} as ValidationReport
    const x = junitXml(r)
    expect(x).toMatch(/<testsuite name="validate.emulated" tests="3" failures="1" errors="0" skipped="1"/)
    expect(x).toContain('<skipped message="emulated mode: &lt;no SEV&gt; &amp; &quot;TCG&quot;"/>')
    expect(x).toContain('<failure message="MISMATCH"/>')
    expect(x.match(/<testcase /g)).toHaveLength(3)
  })
})
