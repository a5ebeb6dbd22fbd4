// Benchmark for `cvm-image build debian-12`: the cold build time per stage, the fully cached
// rebuild, and a rebuild after changing only the kernel command line (assemble, validate and
// publish rerun; everything else comes from the cache).
// Run: npm run bench -- e2e-build   (BENCH_CACHE=dir reuses a cache instead of a fresh one)
import {execFileSync, spawnSync} from 'node:child_process'
import {cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {availableParallelism, tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const repo = join(dirname(fileURLToPath(import.meta.url)), '..')
const scratch = mkdtempSync(join(tmpdir(), 'cvm-bench-e2e-'))
const cache = process.env.BENCH_CACHE ?? join(scratch, 'cache')
const out = join(scratch, 'out')

interface Outcome {stage: string; status: string; seconds: number}

function build(label: string, extra: string[] = []): {stages: Outcome[]; wall: number} {
  const t0 = Date.now()
  const r = spawnSync(process.execPath, [join(repo, 'bin/run.js'), 'build', 'debian-12', '--cache-dir', cache, '--publish', out, '--json', ...extra], {encoding: 'utf8', maxBuffer: 64 << 20})
  const wall = (Date.now() - t0) / 1000
  if (r.status !== 0) {
    console.error(r.stderr, r.stdout.slice(-3000))
    throw new Error(`${label}: build exited ${r.status}`)
  }
  const res = JSON.parse(r.stdout) as {stages: Outcome[]; published?: {bytesUploaded: number}}
  console.log(`${label}: ${wall.toFixed(1)} s wall`)
  for (const s of res.stages) console.log(`  ${s.stage.padEnd(14)} ${s.status.padEnd(6)} ${s.seconds.toFixed(1).padStart(7)} s`)
  console.log(`  publish: ${res.published?.bytesUploaded ?? 0} bytes written`)
  return {stages: res.stages, wall}
}

console.log(`machine: ${availableParallelism()} cores; cache ${cache}`)
execFileSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', join(repo, 'tsconfig.json')])
// a BENCH_CACHE that is absent or empty still gives a cold first build (and leaves its disk to reuse)
const warm = existsSync(cache) && readdirSync(cache).length > 0
const cold = build(warm ? 'first build (BENCH_CACHE holds a cache: not cold)' : 'cold build')
// issue #19's goal: a cold build costs at most 60 s beyond its kernel compile on 2 cores
const compile = cold.stages.find((s) => s.stage === 'compile' && s.status === 'ran')?.seconds
if (compile) {
  console.log(`  beyond the compile: ${(cold.wall - compile).toFixed(1)} s (goal <= 60 s); (wall - compile) / compile = ${((cold.wall - compile) / compile).toFixed(2)}`)
  // the validation has a goal of its own (bench validate-boot): what the rest of the build adds
  const validate = cold.stages.find((s) => s.stage === 'validate' && s.status === 'ran')?.seconds ?? 0
  console.log(`  beyond the compile and the validation (${validate.toFixed(1)} s): ${(cold.wall - compile - validate).toFixed(1)} s`)
}
build('fully cached rebuild')

// Only the command line changes: a copy of the project's data with one more (harmless) argument.
const root = join(scratch, 'root')
for (const d of ['recipes', 'kernels', 'templates']) cpSync(join(repo, d), join(root, d), {recursive: true})
const common = join(root, 'recipes', '_common.yaml')
writeFileSync(common, readFileSync(common, 'utf8').replace(/cmdline: console=tty0 console=ttyS0 rw/, 'cmdline: console=tty0 console=ttyS0 rw mitigations=auto'))
const ran = build('kernel command line changed', ['--root', root]).stages.filter((s) => s.status === 'ran').map((s) => s.stage)
console.log(`  stages that ran: ${ran.join(', ')} (expected: assemble, validate)`)
