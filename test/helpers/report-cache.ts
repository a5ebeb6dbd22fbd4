import {mkdir, writeFile} from 'node:fs/promises'
import {dirname, join} from 'node:path'

import {checkRecipeKernel} from '../../src/service/kernel-check.js'
import type {BuildRecord} from '../../src/pipeline/build-record.js'
import {StageCache} from '../../src/pipeline/cache.js'
import {planBuild} from '../../src/pipeline/plan.js'
import type {StageResultTypes} from '../../src/pipeline/results.js'
import type {StageName} from '../../src/pipeline/stage.js'
import {STAGES} from '../../src/pipeline/stages/index.js'
import {RecipeStore, projectDirs, type LoadedRecipe} from '../../src/recipe/load.js'
import {repoRoot} from './paths.js'

export const FAKE_RECIPE = 'backport-5.4'
export const dirs = projectDirs(repoRoot)

async function put(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), {recursive: true})
  await writeFile(path, text)
}

/** A cache entry where the stage's key puts it: result.json plus files. */
async function entry<S extends StageName>(cacheDir: string, stage: S, key: string, meta: StageResultTypes[S], files: Record<string, string> = {}): Promise<string> {
  const dir = new StageCache(cacheDir).entryDir(stage, key)
  for (const [name, text] of Object.entries(files)) await put(join(dir, name), text)
  await put(join(dir, 'result.json'), JSON.stringify(meta))
  return dir
}

const MAKEFILE = 'VERSION = 5\nPATCHLEVEL = 4\nSUBLEVEL = 59\nEXTRAVERSION =\nNAME = Kleptomaniac Octopus\n'

/** A validate stage's entry: report.json and serial logs, its nvme-integrity evidence as the probe words it. */
async function validateEntry(cacheDir: string, key: string, verdict: 'passed' | 'failed', nvme: string): Promise<{dir: string; meta: StageResultTypes['validate']}> {
  const meta: StageResultTypes['validate'] = {
    verdict,
    modes: ['emulated'],
    checks: [
      {mode: 'emulated', name: 'boot', verdict: 'pass', evidence: 'SSH answered'},
      {mode: 'emulated', name: 'nvme-integrity', verdict: verdict === 'passed' ? 'pass' : 'fail', evidence: nvme},
    ],
    when: verdict === 'passed' ? '2026-11-02T10:00:00.000Z' : '2026-11-01T09:30:00.000Z',
    hostKind: 'local',
  }
  const dir = await entry(cacheDir, 'validate', key, meta, {'report.json': JSON.stringify({verdict}), 'serial.log': 'Linux version 5.4.59\n', 'serial-emulated-disk-boot.log': 'disk boot\n'})
  return {dir, meta}
}

/**
 * A small cache for `cvm-image report` tests, at the keys the current code gives FAKE_RECIPE: its
 * kernel-source tree (5.4.59 with SEV and the sev-guest driver, none of the SWIOTLB fixes), its
 * patched tree (min_align_mask added by one backport of the series), a configure output without
 * CONFIG_SEV_GUEST, and two build records: the patched build (passed, 384/384) and the control
 * build (failed, 170 of 384). Every other recipe has nothing in this cache. With otherCode, the two
 * tree entries sit at keys other code gave them, recorded as the recipe's last build of each stage
 * (recipes/<id>/<stage>.json) with the inputs the current code gives (or other inputs).
 */
export async function makeReportCache(cacheDir: string, opts: {otherCode?: {inputsChanged?: boolean}} = {}): Promise<{recipe: LoadedRecipe; validateDirs: {patched: string; control: string}}> {
  const recipe = new RecipeStore(dirs).load(FAKE_RECIPE)
  const ctx = {recipe, dirs, options: {}, cacheDir}
  const plan = await planBuild(ctx, new StageCache(cacheDir), STAGES.filter((s) => s.name === 'kernel-source' || s.name === 'patch'))
  const planned = (n: StageName) => plan.find((p) => p.name === n)!
  const otherKeys: Partial<Record<StageName, string>> = opts.otherCode ? {'kernel-source': '1'.repeat(64), patch: '2'.repeat(64)} : {}
  const key = (n: StageName) => otherKeys[n] ?? planned(n).key
  if (opts.otherCode) {
    const cache = new StageCache(cacheDir)
    const inputs = (n: StageName) => (opts.otherCode!.inputsChanged && n === 'patch' ? {...(planned(n).inputs as object), names: ['5.4/other.yaml']} : planned(n).inputs)
    await cache.recordInputs(FAKE_RECIPE, 'kernel-source', key('kernel-source'), inputs('kernel-source'), {}, {})
    await cache.recordInputs(FAKE_RECIPE, 'patch', key('patch'), inputs('patch'), {'kernel-source': key('kernel-source')}, {})
  }
  const source = {
    'tree/Makefile': MAKEFILE,
    'tree/arch/x86/Kconfig': 'config AMD_MEM_ENCRYPT\n\tbool "AMD Secure Memory Encryption (SME) support"\n',
    'tree/drivers/virt/coco/sev-guest/sev-guest.c': '// the /dev/sev-guest driver\n',
    'tree/drivers/virt/coco/sev-guest/Kconfig': 'config SEV_GUEST\n\ttristate "AMD SEV Guest driver"\n',
    'tree/kernel/dma/swiotlb.c': 'int swiotlb_force;\n',
  }
  await entry(cacheDir, 'kernel-source', key('kernel-source'), {kind: 'archive', version: '5.4.59', digest: 'f'.repeat(64)}, source)
  const applied = [
    {series: '5.4/series.yaml', kind: 'backport' as const, subject: 'swiotlb, nvme: keep the in-page offset (min_align_mask)', file: '5.4/0100-swiotlb-min-align-mask.patch', backports: ['36950f2da1ea', '16fc3cef33a0'], fixes: ['min-align-mask'], action: 'applied' as const, reason: 'not in the tree'},
  ]
  await entry(cacheDir, 'patch', key('patch'), {control: false, applied, skipped: [], withheld: []}, {
    ...source,
    'tree/include/linux/device.h': 'struct device_dma_parameters {\n\tunsigned long min_align_mask;\n};\n',
    'tree/kernel/dma/swiotlb.c': 'int swiotlb_force;\nstatic unsigned int swiotlb_align_offset(struct device *dev, u64 addr) { return addr & dma_get_min_align_mask(dev) & (IO_TLB_SIZE - 1); } // min_align_mask\n',
    'tree/drivers/nvme/host/pci.c': '\tdma_set_min_align_mask(&pdev->dev, NVME_CTRL_PAGE_SIZE - 1);\n',
  })
  const configure = await entry(cacheDir, 'configure', 'c'.repeat(64), {base: 'lean', features: ['sev'], digest: 'd'.repeat(64), verified: []}, {config: 'CONFIG_AMD_MEM_ENCRYPT=y\nCONFIG_CPU_SUP_AMD=y\n# CONFIG_SEV_GUEST is not set\n'})
  const patched = await validateEntry(cacheDir, 'a'.repeat(64), 'passed', '384/384 O_DIRECT cases intact on /dev/nvme1n1: writes from in-page offsets 0..3584; contig 192/192, scattered 192/192')
  const control = await validateEntry(cacheDir, 'b'.repeat(64), 'failed', '170 of 384 O_DIRECT cases from in-page offsets failed (101 write-side: 90 silent write corruptions, 11 write errors; 69 read-side: 0 corrupt reads, 69 read errors): contig 85/192, scattered 85/192. First: <offset 512>')
  const record = (validate: typeof patched, control: boolean): BuildRecord => ({
    recipeId: FAKE_RECIPE,
    recipeDigest: recipe.digest,
    recipe: recipe.recipe,
    toolVersion: 'test',
    sourceDateEpoch: recipe.recipe.source_date_epoch,
    finishedAt: '2026-11-02T10:01:00.000Z',
    stages: {
      patch: {stage: 'patch', key: key('patch'), dir: '', meta: {control, applied: [], skipped: [], withheld: []}},
      configure: {stage: 'configure', key: 'c'.repeat(64), dir: configure, meta: {base: 'lean', features: ['sev'], digest: 'd'.repeat(64), verified: []}},
      validate: {stage: 'validate', key: validate.dir.split('/').at(-1)!, dir: validate.dir, meta: validate.meta},
    },
  })
  await put(join(cacheDir, 'builds', `${FAKE_RECIPE}.json`), JSON.stringify(record(patched, false)))
  await put(join(cacheDir, 'builds', `${FAKE_RECIPE}.control.json`), JSON.stringify(record(control, true)))
  // the kernel check of the recipe reads this very cache: a sanity check of the fixture itself
  const checked = await checkRecipeKernel(ctx, new StageCache(cacheDir), {cacheOnly: true})
  if (checked.missing.length && !opts.otherCode?.inputsChanged) throw new Error(`report fixture: ${checked.missing.join(', ')} not found at the keys the code gives`)
  return {recipe, validateDirs: {patched: patched.dir, control: control.dir}}
}
