import {existsSync} from 'node:fs'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {archive, buildBackport, byName, parseBuild, patchResult, scratchCwd, seriesBackports} from './helpers/backport.js'

// The control of the 5.4 proof: kernel.org 5.4.59 with only the build and tree fixes of its series
// (no backport), through the CLI. It must fail NVMe integrity through SWIOTLB where the patched build
// (test/backport-5.4.test.ts) passes: that difference is what the series is proven to fix.
const cwd = scratchCwd()

describe('backport-5.4 --control on the real 5.4.59 tree', () => {
  it('the old-kernels archive is here', () => {
    expect(existsSync(archive), `${archive} missing: CI has ../shared beside the clone; set CVM_TEST_OLD_KERNELS elsewhere`).toBe(true)
  })

  it('the unpatched 5.4.59 fails NVMe integrity through SWIOTLB, with the failing cases as evidence, and is not published (no disk boot, no kexec)', async () => {
    const b = parseBuild(await buildBackport(cwd, 'backport-5.4', '--control'))
    expect(b.control).toBe(true)
    expect(b.published).toBeUndefined()
    expect(existsSync(join(cwd, 'out'))).toBe(false)
    // only the build and tree fixes went in: every backport was withheld
    const p = patchResult(b)
    expect(p.applied.map((r) => r.kind).sort()).toEqual(['build-fix', 'build-fix', 'build-fix', 'tree-fix'])
    expect(p.withheld.filter((r) => r.kind === 'backport').map((r) => r.file)).toEqual(await seriesBackports('5.4'))
    const v = b.validation!
    expect(v.verdict).toBe('failed')
    const c = byName(v.checks)
    // the kernel that booted is the control build, and everything but the bug works on it
    expect(c.boot.verdict).toBe('pass')
    expect(c.kernel.verdict).toBe('pass')
    expect(c['swiotlb-active'].verdict).toBe('pass')
    expect(c['nvme-integrity'].verdict).toBe('fail')
    // write-side corruption (the disk got wrong bytes) is named with its counts and cases
    expect(c['nvme-integrity'].evidence).toMatch(/write-corrupt/)
    expect(c['nvme-integrity'].evidence).toMatch(/\d+ of 384/)
    // a control is never published: no disk boot (its PCRs would prove nothing), the UKI boot alone
    expect(v.checks.filter((x) => x.name.startsWith('disk-boot:')).map((x) => x.name)).toEqual([])
    // nor a kexec round trip (a second full boot): reported as not run, with why
    expect(c.kexec).toMatchObject({verdict: 'skip', evidence: expect.stringMatching(/^not run: a --control build is never published/)})
  }, 60 * 60_000)
})
