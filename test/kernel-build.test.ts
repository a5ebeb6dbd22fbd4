import {existsSync, mkdtempSync, readFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {checkKernel} from '../src/kernel/check.js'
import {parseCcacheRemote} from '../src/kernel/ccache-remote.js'
import {compileKernel, type CompileRequest} from '../src/kernel/compile.js'
import {StageCache} from '../src/pipeline/cache.js'
import {runStages, type RunStagesResult} from '../src/pipeline/run.js'
import {projectDirs, RecipeStore} from '../src/recipe/load.js'
import {sha256File} from '../src/util/fsx.js'
import {repoRoot, sharedTestCache} from './helpers/paths.js'
import {startRedis} from './helpers/redis.js'
import {KERNEL_STAGES} from './kernel-fixtures.js'

// The real debian-12 recipe's kernel (bookworm's linux-source-6.1, the lean CVM profile), built in
// the shared test cache with the same stage keys as a full build: the end-to-end tests reuse it.
const dirs = projectDirs(repoRoot)
const recipe = new RecipeStore(dirs).load('debian-12')
let built: RunStagesResult
// the team's ccache store (issue #27): the build below writes every object it compiles into it
let redis: Awaited<ReturnType<typeof startRedis>>
const REDIS_PASSWORD = 'kernel-build-test'
/** whether this file's own build compiled (nearly) every object, and so filled the store: then no second build has to */
let storeFilled = false

beforeAll(async () => {
  const cacheDir = sharedTestCache()
  redis = await startRedis({password: REDIS_PASSWORD})
  const ccacheRemote = parseCcacheRemote(`redis://:${REDIS_PASSWORD}@127.0.0.1:${redis.port}`)
  // --ccache-remote reaches the compile as environment, not key: the stage key is the full build's
  built = await runStages({recipe, dirs, options: {jobs: 2, ccacheRemote}, cacheDir}, new StageCache(cacheDir), KERNEL_STAGES, {until: 'compile', renderer: 'silent'})
  if (built.outcomes.find((o) => o.stage === 'compile')?.status === 'ran') {
    const line = /ccache: (\d+) local hits, (\d+) from .*, (\d+) compiled/.exec(readFileSync(join(built.results.compile!.dir, 'stage.log'), 'utf8'))
    if (line) storeFilled = Number(line[3]) >= 0.95 * (Number(line[1]) + Number(line[2]) + Number(line[3]))
  }
  // a cold build on a loaded 2-core machine has taken over 30 minutes
}, 4 * 3600_000)

afterAll(async () => {
  await redis?.stop()
})

describe('the lean CVM profile on linux-source-6.1 (debian-12)', () => {
  it('builds a bzImage, stripped modules, System.map, config and kernel.json', () => {
    const out = built.results.compile!.dir
    const vmlinuz = readFileSync(join(out, 'vmlinuz'))
    // the x86 boot protocol header: "HdrS" at 0x202, and the PE "MZ" of the EFI stub at 0
    expect(vmlinuz.subarray(0x202, 0x206).toString()).toBe('HdrS')
    expect(vmlinuz.subarray(0, 2).toString()).toBe('MZ')
    const kernel = JSON.parse(readFileSync(join(out, 'kernel.json'), 'utf8'))
    expect(kernel.release).toMatch(/^6\.1\.\d+-cvm$/)
    expect(kernel.patches.map((p: {file?: string}) => p.file)).toContain('6.1/cvm-marker.patch')
    expect(readFileSync(join(out, 'System.map'), 'utf8')).toMatch(/ T cvm_marker_init$|cvm_marker_init/m)
    const modules = join(out, 'modules', 'lib', 'modules', kernel.release)
    expect(existsSync(join(modules, 'modules.dep'))).toBe(true)
    expect(existsSync(join(modules, 'build'))).toBe(false)
    expect(readFileSync(join(out, 'config'), 'utf8')).toContain('CONFIG_AMD_MEM_ENCRYPT=y')
  })

  it('kernel check on its .config reports sev and sev-es supported', async () => {
    const r = await checkKernel(dirs.kernels, join(built.results.compile!.dir, 'config'))
    const status = Object.fromEntries(r.features.map((f) => [f.feature, f.status]))
    expect(status.sev).toBe('supported')
    expect(status['sev-es']).toBe('supported')
    for (const f of recipe.recipe.kernel.config.features) expect(status[f], f).toBe('supported')
  })

  it('a rebuild from an empty local ccache, with the Redis store the build filled (or a reshare build filled), gives a byte-identical vmlinuz with 95% of its objects from the store', async () => {
    const {patch, configure, compile} = built.results
    const expected = await sha256File(join(compile!.dir, 'vmlinuz'))
    const scratch = mkdtempSync(join(sharedTestCache(), 'tmp-rebuild-'))
    const remote = parseCcacheRemote(`redis://:${REDIS_PASSWORD}@127.0.0.1:${redis.port}`)
    const build = (name: string, o: Partial<CompileRequest>) =>
      compileKernel({
        tree: join(patch!.dir, 'tree'),
        config: join(configure!.dir, 'config'),
        work: join(scratch, name, 'work'),
        out: join(scratch, name, 'out'),
        sourceDateEpoch: recipe.recipe.source_date_epoch,
        localversion: recipe.recipe.kernel.localversion,
        jobs: 2,
        ccacheDir: join(sharedTestCache(), 'ccache'),
        statsDir: join(sharedTestCache(), 'kbuild-stats'),
        progress: () => {},
        ...o,
      })
    try {
      if (!storeFilled) {
        // the kernel came from the cache (another file or run compiled it): its warm local ccache's hits fill the store
        const second = await build('second', {ccacheRemote: remote, ccacheReshare: true})
        expect(second.vmlinuzSha256).toBe(expected)
      }
      const third = await build('third', {ccacheDir: join(scratch, 'empty-ccache'), ccacheRemote: remote})
      expect(third.vmlinuzSha256).toBe(expected)
      const {local, remote: fromRemote, miss} = third.ccache
      expect(fromRemote / (local + fromRemote + miss), `${fromRemote} remote hits, ${local} local, ${miss} compiled`).toBeGreaterThanOrEqual(0.95)
    } finally {
      await rm(scratch, {recursive: true, force: true})
    }
  }, 3 * 3_600_000)
})
