import {copyFile, mkdir, mkdtemp, readFile, rm} from 'node:fs/promises'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {KernelCheckResult} from '../src/kernel/check.js'
import {kmake} from '../src/kernel/kbuild.js'
import {linkCopy} from '../src/kernel/tree.js'
import {StageCache} from '../src/pipeline/cache.js'
import type {PatchResult} from '../src/pipeline/results.js'
import {runStages, type RunStagesResult} from '../src/pipeline/run.js'
import {projectDirs, RecipeStore} from '../src/recipe/load.js'
import {run} from '../src/util/exec.js'
import {cli} from './helpers/cli.js'
import {repoRoot, sharedTestCache} from './helpers/paths.js'
import {KERNEL_STAGES} from './kernel-fixtures.js'

// Debian 11's own kernel (bullseye's linux-source-5.10, from Debian's mirror) with kernels/5.10's
// series: e998879d4fb7 (SEV SWIOTLB sizing, mainline 5.11, never in 5.10.y) is added by
// 0200-swiotlb-sev-size.patch, written here against this tree, and the min_align_mask commits are
// skipped because the tree has them. The files the backport changes are compiled with the recipe's
// own configuration (SEV on). The whole debian-11 build, boot and validation with it is measured by
// hand (docs/testing.md): a fifth full kernel compile does not fit CI's budget (issue "Fast enough").
const dirs = projectDirs(repoRoot)
const recipe = new RecipeStore(dirs).load('debian-11')
const BACKPORT = '5.10/0200-swiotlb-sev-size.patch'
let built: RunStagesResult
let scratch: string

beforeAll(async () => {
  const cacheDir = sharedTestCache()
  built = await runStages({recipe, dirs, options: {jobs: 2}, cacheDir}, new StageCache(cacheDir), KERNEL_STAGES, {until: 'configure', renderer: 'silent'})
  scratch = await mkdtemp(join(cacheDir, 'tmp-5.10-objects-'))
}, 20 * 60_000)

afterAll(async () => {
  if (scratch) await rm(scratch, {recursive: true, force: true})
})

describe("kernels/5.10 on Debian 11's linux-source-5.10", () => {
  it('applies the SEV SWIOTLB sizing backport and skips the min_align_mask commits the tree already has', async () => {
    const p = JSON.parse(await readFile(join(built.results.patch!.dir, 'result.json'), 'utf8')) as PatchResult
    const applied = p.applied.map((r) => r.file)
    expect(applied).toEqual([BACKPORT, '5.10/cvm-marker.patch'])
    const backport = p.applied.find((r) => r.file === BACKPORT)!
    expect(backport).toMatchObject({kind: 'backport', backports: ['e998879d4fb7'], fixes: ['sev-swiotlb-size'], action: 'applied'})
    // every upstream entry is skipped as present, read from the tree (no kernel git in this run)
    expect(p.skipped.length).toBe(9)
    for (const s of p.skipped) expect(s.reason, s.subject).toMatch(/^the tree already has min-align-mask \(include\/linux\/device\.h:\d+: /)
    const tree = join(built.results.patch!.dir, 'tree')
    expect(await readFile(join(tree, 'kernel/dma/swiotlb.c'), 'utf8')).toMatch(/^void __init swiotlb_adjust_size\(unsigned long size\)$/m)
    expect(await readFile(join(tree, 'arch/x86/kernel/setup.c'), 'utf8')).toMatch(/e820__memblock_setup\(\);\n\n(?:\t.*\n)*\tsev_setup_arch\(\);/)
  })

  it('kernel check debian-11 reads sev-swiotlb-size as added by the series, and no guest fix missing', async () => {
    const r = await cli(['kernel', 'check', 'debian-11', '--cache-dir', sharedTestCache(), '--json'], {timeoutMs: 10 * 60_000})
    expect(r.code, r.stderr).toBe(0)
    const result = JSON.parse(r.stdout) as KernelCheckResult
    expect(result.version).toBe(built.results['kernel-source']!.meta.version)
    const fixes = Object.fromEntries(result.fixes!.map((f) => [f.fix, f]))
    expect(fixes['sev-swiotlb-size'].status).toBe('added-by-series')
    expect(fixes['sev-swiotlb-size'].addedBy).toEqual([BACKPORT])
    expect(fixes['sev-swiotlb-size'].evidence.join('\n')).toMatch(/^kernel\/dma\/swiotlb.c:\d+: void __init swiotlb_adjust_size/)
    expect(result.fixes!.filter((f) => f.status === 'missing').map((f) => f.fix)).toEqual([])
  })

  it("compiles the files the backport changes with the recipe's configuration (CONFIG_AMD_MEM_ENCRYPT=y): setup_arch calls sev_setup_arch, which calls swiotlb_adjust_size", async () => {
    const config = join(built.results.configure!.dir, 'config')
    expect(await readFile(config, 'utf8')).toMatch(/^CONFIG_AMD_MEM_ENCRYPT=y$/m)
    const src = join(scratch, 'src')
    await linkCopy(join(built.results.patch!.dir, 'tree'), src)
    const objdir = join(src, '.cvm-build')
    await mkdir(objdir)
    await copyFile(config, join(objdir, '.config'))
    const objects = ['kernel/dma/swiotlb.o', 'arch/x86/mm/mem_encrypt.o', 'arch/x86/kernel/setup.o']
    await kmake({tree: src, objdir, jobs: 2, targets: objects, logFile: join(scratch, 'make.log'), what: 'compile the files 0200-swiotlb-sev-size.patch changes'})
    const symbols = async (o: string) => (await run('nm', [join(objdir, o)], {what: `read the symbols of ${o}`})).stdout
    expect(await symbols('kernel/dma/swiotlb.o')).toMatch(/ T swiotlb_adjust_size$/m)
    const memEncrypt = await symbols('arch/x86/mm/mem_encrypt.o')
    expect(memEncrypt).toMatch(/ T sev_setup_arch$/m)
    expect(memEncrypt).toMatch(/ U swiotlb_adjust_size$/m)
    expect(await symbols('arch/x86/kernel/setup.o')).toMatch(/ U sev_setup_arch$/m)
  }, 20 * 60_000)
})
