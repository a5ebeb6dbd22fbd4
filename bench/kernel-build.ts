// Kernel build times: a cold build of the debian-12 kernel (empty ccache) and the rebuild after one
// patch of its series changed (ccache warm). Prints the figures; asserts nothing.
// Run: npm run bench -- kernel-build   (CVM_BENCH_CACHE=<dir> keeps the cache somewhere else)
import {cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {availableParallelism, cpus} from 'node:os'
import {join} from 'node:path'

import {runBuild} from '../src/service/service.js'
import {ccacheStats} from '../src/kernel/compile.js'
import {StageCache} from '../src/pipeline/cache.js'
import {compileStage} from '../src/pipeline/stages/compile.js'
import {configureStage} from '../src/pipeline/stages/configure.js'
import {kernelSourceStage} from '../src/pipeline/stages/kernel-source.js'
import {patchStage} from '../src/pipeline/stages/patch.js'
import {projectDirs, RecipeStore} from '../src/recipe/load.js'

const repo = join(import.meta.dirname, '..')
const root = mkdtempSync('/var/tmp/cvm-bench-kernel-project-')
for (const d of ['recipes', 'kernels', 'templates']) cpSync(join(repo, d), join(root, d), {recursive: true})
const cacheDir = process.env.CVM_BENCH_CACHE ?? mkdtempSync('/var/tmp/cvm-bench-kernel-cache-')
const dirs = projectDirs(root)
const jobs = availableParallelism()
const stages = [kernelSourceStage, patchStage, configureStage, compileStage]

async function build(label: string): Promise<number> {
  const recipe = new RecipeStore(dirs).load('debian-12')
  const t0 = Date.now()
  const r = await runBuild({ctx: {recipe, dirs, options: {jobs}, cacheDir}, cache: new StageCache(cacheDir), stages, until: 'compile', renderer: 'silent'})
  const s = (Date.now() - t0) / 1000
  const ran = r.stages.map((o) => `${o.stage} ${o.status} ${o.seconds.toFixed(0)}s`).join(', ')
  console.log(`${label}: ${s.toFixed(0)} s (${ran})`)
  return s
}

console.log(`host: ${cpus()[0]?.model ?? '?'}, ${cpus().length} cores, make -j${jobs}; cache ${cacheDir}`)
// with CVM_BENCH_CACHE the first build may find its stages cached: then it is not a cold figure
const coldCache = !existsSync(join(cacheDir, 'ccache')) && !existsSync(join(cacheDir, 'stages'))
const cold = await build(coldCache ? 'cold build (download, unpack, patch, configure, compile with an empty ccache)' : 'first build (NOT cold: the given cache already has stages or ccache entries)')
const marker = join(dirs.kernels, '6.1', 'cvm-marker.patch')
writeFileSync(marker, readFileSync(marker, 'utf8').replace('applied\\n', 'applied (bench rebuild)\\n'))
const rebuild = await build('rebuild after changing one patch (6.1/cvm-marker.patch), ccache warm')
console.log(`figures: cores=${cpus().length} ${coldCache ? 'cold_s' : 'first_build_s'}=${cold.toFixed(0)} rebuild_s=${rebuild.toFixed(0)}${coldCache ? ` speedup=${(cold / rebuild).toFixed(1)}x` : ''}`)
console.log((await ccacheStats(join(cacheDir, 'ccache'))).split('\n').filter((l) => /hit|miss|Hits|Misses/i.test(l)).join('\n'))
rmSync(root, {recursive: true, force: true})
