import {readdirSync} from 'node:fs'

import {describe, expect, it} from 'vitest'

import {buildBackport, kernelCheck, parseBuild, patchResult, scratchCwd, seriesBackports, stageDir} from './helpers/backport.js'

// The 5.8 line: kernels/5.8's series (the SWIOTLB fixes and the SEV-ES guest of 5.10) applies to
// kernel.org 5.8.18, configures and compiles. Its image was validated by hand (384/384): CI proves
// the compile, the 5.4 and 4.18 lines prove the boot.
const cwd = scratchCwd()

describe('backport-5.8 on the real 5.8.18 tree', () => {
  it('the series applies to the real tree (every backport applied, none skipped), configures and compiles', async () => {
    const b = parseBuild(await buildBackport(cwd, 'backport-5.8', '--until', 'compile'))
    expect(b.stages.map((s) => s.stage)).toEqual(['base', 'kernel-source', 'patch', 'configure', 'compile'])
    const p = patchResult(b)
    expect(p.skipped).toEqual([])
    expect(p.applied.filter((r) => r.kind === 'backport').map((r) => r.file)).toEqual(await seriesBackports('5.8'))
    expect(readdirSync(stageDir(b, 'compile'))).toEqual(expect.arrayContaining(['vmlinuz', 'kernel.json']))
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
