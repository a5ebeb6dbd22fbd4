import {existsSync} from 'node:fs'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {decryptedSnakeoilKey, SNAKEOIL_CERT} from './helpers/snakeoil.js'
import {buildBackport, byName, kernelCheck, parseBuild, patchResult, scratchCwd, seriesBackports, stageDir, type Check} from './helpers/backport.js'

// The 5.4 proof, patched: kernels/5.4's series on kernel.org 5.4.59 must pass every check where the
// control (test/backport-5.4-control.test.ts) fails NVMe integrity.
const cwd = scratchCwd()

describe('backport-5.4 on the real 5.4.59 tree', () => {
  // one build, signed with Debian's snakeoil key: its validation boots the UKI (every check), the
  // disk, and the disk under Secure Boot at once, as a signed release is validated
  let checks: Record<string, Check>

  it('every check passes (memory encryption skipped: no SEV here), with each backport applied, not skipped', async () => {
    // Debian's snakeoil key is encrypted with the password "snakeoil": a decrypted copy signs
    const key = await decryptedSnakeoilKey(join(cwd, 'snakeoil.key'))
    const b = parseBuild(await buildBackport(cwd, 'backport-5.4', '--signing-key', key, '--signing-cert', SNAKEOIL_CERT, '--no-publish'))
    expect(b.control).toBe(false)
    const v = b.validation!
    const failed = v.checks.filter((x) => x.verdict === 'fail')
    expect(failed, JSON.stringify(failed, null, 2)).toEqual([])
    expect(v.verdict).toBe('passed')
    const c = byName(v.checks)
    checks = c
    expect(c['nvme-integrity'].verdict).toBe('pass')
    expect(c['nvme-integrity'].evidence).toMatch(/384\/384/)
    expect(c['swiotlb-bounce'].verdict).toBe('pass')
    expect(c.kexec.verdict).toBe('pass')
    expect(c['memory-encryption'].verdict).toBe('skip')
    // the patch stage applied the series' backports, judged from the tree's content: none was already there
    const p = patchResult(b)
    expect(p.skipped).toEqual([])
    expect(p.applied.filter((r) => r.kind === 'backport').map((r) => r.file)).toEqual(await seriesBackports('5.4'))
    expect(existsSync(join(stageDir(b, 'patch'), 'tree', 'kernel', 'dma', 'pool.c'))).toBe(true)
  }, 60 * 60_000)

  it('signed with the snakeoil key, the firmware boots it under Secure Boot, and its PCR 4, 7 and 11 are the predicted ones (swtpm)', () => {
    expect(checks, 'the build above did not finish').toBeDefined()
    for (const name of ['disk-boot:tpm-pcrs', 'secure-boot:secure-boot', 'secure-boot:tpm-pcrs']) expect(checks[name]?.verdict, `${name}: ${checks[name]?.evidence}`).toBe('pass')
    expect(checks['secure-boot:secure-boot'].evidence).toMatch(/^SecureBoot variable: 1; dmesg: .*Secure boot enabled$/)
    // a 5.4 kernel goes through the stub's EFI handover: under Secure Boot PCR 4 holds the signed UKI alone
    expect(checks['secure-boot:tpm-pcrs'].evidence).toMatch(/PCR 4 [0-9a-f]{64} = predicted \(Secure Boot on\); PCR 7 [0-9a-f]{64} = predicted \(Secure Boot on\)$/)
  })

  it('kernel check backport-5.4: each guest fix missing from 5.4.59 is added by the series', async () => {
    const k = await kernelCheck(cwd, 'backport-5.4')
    expect(k.kind).toBe('recipe')
    const status = Object.fromEntries(k.fixes!.map((f) => [f.fix, f.status]))
    expect(status).toEqual({
      'min-align-mask': 'added-by-series',
      'swiotlb-sync-offset': 'added-by-series',
      'nvme-min-align-first': 'added-by-series',
      'sev-swiotlb-size': 'added-by-series',
      'dma-atomic-pools': 'added-by-series',
      // kernels/5.4 does not carry the SEV-ES guest: that needs the 5.8 line with its series, or 5.10+
      'sev-es-guest': 'missing',
      // 5.4.59 has none of the code the 2024 SWIOTLB alignment fixes change (5.15's dma-iommu bouncing)
      'swiotlb-alloc-align': 'not-applicable',
      'iommu-untrusted-max-mapping': 'not-applicable',
    })
    expect(k.features.find((f) => f.feature === 'sev-es')!.status).toBe('needs-backport')
    expect(k.features.find((f) => f.feature === 'swiotlb')!.status).toBe('supported')
  }, 15 * 60_000)
})
