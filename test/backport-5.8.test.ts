import {cpSync, mkdtempSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {buildBackport, kernelCheck, parseBuild, patchResult, scratchCwd, seriesBackports, stageDir} from './helpers/backport.js'
import {repoRoot} from './helpers/paths.js'

// The 5.8 line: kernels/5.8's series (the SWIOTLB fixes and the SEV-ES guest of 5.10) applies to
// kernel.org 5.8.18, configures and compiles. Its image was validated by hand (384/384): CI proves
// the compile, the 5.4 and 4.18 lines prove the boot.
//
// The compile is the series' proof, not the lean profile's (backport-5.4 and the 4.18 proof build
// and boot that): it uses config base minimal, allnoconfig with only the fragments of the features
// the series touches (SWIOTLB, NVMe, SEV, SEV-ES, the EFI stub), so every file the series changes
// is compiled in less than half the objects. docs/testing.md has the figures.
const cwd = scratchCwd()
const root = mkdtempSync(join(tmpdir(), 'cvm-backport-5.8-'))
afterAll(() => rm(root, {recursive: true, force: true}))
for (const d of ['recipes', 'kernels', 'templates']) cpSync(join(repoRoot, d), join(root, d), {recursive: true})
writeFileSync(
  join(root, 'recipes', 'backport-5.8-compile.yaml'),
  `extends: backport-5.8
name: "Backport proof, Linux 5.8.18: the series compiled with config base minimal"
kernel:
  config:
    base: minimal
    features: [efi-stub, sev, sev-es, swiotlb, nvme]
    # the series' per-CPU and AP start-up code (SEV-ES GHCBs) is built only with SMP
    options: {CONFIG_SMP: "y"}
`,
)

describe('backport-5.8 on the real 5.8.18 tree', () => {
  it('the series applies to the real tree (every backport applied, none skipped), configures and compiles, the SEV-ES guest built in', async () => {
    const b = parseBuild(await buildBackport(cwd, 'backport-5.8-compile', '--root', root, '--until', 'compile'))
    expect(b.stages.map((s) => s.stage)).toEqual(['base', 'kernel-source', 'patch', 'configure', 'compile'])
    const p = patchResult(b)
    expect(p.skipped).toEqual([])
    expect(p.applied.filter((r) => r.kind === 'backport').map((r) => r.file)).toEqual(await seriesBackports('5.8'))
    const out = stageDir(b, 'compile')
    expect(readdirSync(out)).toEqual(expect.arrayContaining(['vmlinuz', 'kernel.json', 'System.map']))
    // the minimal base: no lean profile (no ext4, no network), the series' options on
    const config = readFileSync(join(out, 'config'), 'utf8')
    expect(config).toMatch(/^CONFIG_AMD_MEM_ENCRYPT=y$/m)
    expect(config).toMatch(/^CONFIG_SMP=y$/m)
    expect(config).toMatch(/^CONFIG_BLK_DEV_NVME=y$/m)
    expect(config).toMatch(/^# CONFIG_EXT4_FS is not set$/m)
    expect(config).not.toMatch(/^CONFIG_INET=y$/m)
    // 0320's #VC handling and 0310's early GHCB code are in the kernel that was linked
    const map = readFileSync(join(out, 'System.map'), 'utf8')
    expect(map).toMatch(/ T sev_es_init_vc_handling$/m)
  }, 60 * 60_000)

  it('kernel check backport-5.8: the SEV-ES guest (5.10) is added by kernels/5.8\'s series, judged from the patched tree', async () => {
    const k = await kernelCheck(cwd, 'backport-5.8')
    const fix = k.fixes!.find((f) => f.fix === 'sev-es-guest')!
    expect(fix.status).toBe('added-by-series')
    expect(fix.addedBy).toEqual(expect.arrayContaining([expect.stringMatching(/0300-/), expect.stringMatching(/0310-/), expect.stringMatching(/0320-/)]))
    const sevEs = k.features.find((f) => f.feature === 'sev-es')!
    expect(sevEs.status).toBe('supported')
    expect(sevEs.reason).toMatch(/^added by the recipe's series: /)
  }, 15 * 60_000)
})
