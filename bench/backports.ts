// Benchmark for the backport proving recipes: per kernel line (4.18, 5.4, 5.8), the time the patch
// stage takes to judge and apply the series, the cold kernel build (empty ccache), and the verdicts
// of the control build (series off but for build fixes) and of the patched build.
// Run: npm run bench -- backports   (BENCH_LINES=5.4,5.8 for a subset; BENCH_CACHE=dir reuses a
// cache, so its builds are not cold; BENCH_OLD_KERNELS=path of old-kernels.tar.zst)
import {execFileSync, spawnSync} from 'node:child_process'
import {mkdtempSync} from 'node:fs'
import {availableParallelism, tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const repo = join(dirname(fileURLToPath(import.meta.url)), '..')
const scratch = mkdtempSync(join(tmpdir(), 'cvm-bench-backports-'))
const cache = process.env.BENCH_CACHE ?? join(scratch, 'cache')
const archive = process.env.BENCH_OLD_KERNELS ?? join(repo, '..', 'shared', 'kernels', 'old-kernels.tar.zst')
const lines = (process.env.BENCH_LINES ?? '4.18,5.4,5.8').split(',')

interface Outcome {
  stage: string
  status: string
  seconds: number
}
interface Build {
  stages: Outcome[]
  validation?: {verdict: string; checks: {name: string; verdict: string; evidence: string}[]}
}

function build(id: string, extra: string[]): {res: Build; wall: number} {
  const t0 = Date.now()
  const r = spawnSync(process.execPath, [join(repo, 'bin/run.js'), 'build', id, '--kernel-source-file', archive, '--cache-dir', cache, '--no-publish', '--json', ...extra], {
    cwd: scratch,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  })
  if (r.status !== 0) {
    console.error(r.stderr.slice(-3000), r.stdout.slice(-3000))
    throw new Error(`${id} ${extra.join(' ')}: build exited ${r.status}`)
  }
  return {res: JSON.parse(r.stdout) as Build, wall: (Date.now() - t0) / 1000}
}

const seconds = (b: Build, stage: string) => b.stages.find((s) => s.stage === stage)
const fmt = (o: Outcome | undefined) => (o ? `${o.seconds.toFixed(1)} s${o.status === 'cached' ? ' (cached)' : ''}` : 'n/a')
function verdict(b: Build): string {
  const v = b.validation
  if (!v) return 'not validated'
  const nvme = v.checks.find((c) => c.name === 'nvme-integrity')
  return `${v.verdict}; nvme-integrity ${nvme?.verdict ?? 'n/a'}: ${(nvme?.evidence ?? '').slice(0, 160)}`
}

console.log(`machine: ${availableParallelism()} cores; cache ${cache}${process.env.BENCH_CACHE ? ' (given: builds may not be cold)' : ' (fresh: cold builds)'}`)
execFileSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', join(repo, 'tsconfig.json')])
const rows: string[] = []
for (const line of lines) {
  const id = `backport-${line}`
  // the control first: its compile is the cold one (empty ccache for this tree)
  const control = build(id, ['--control'])
  const patched = build(id, [])
  console.log(`\n${id}`)
  console.log(`  control: ${control.wall.toFixed(0)} s wall; patch ${fmt(seconds(control.res, 'patch'))}, cold compile ${fmt(seconds(control.res, 'compile'))}, validate ${fmt(seconds(control.res, 'validate'))}`)
  console.log(`           ${verdict(control.res)}`)
  console.log(`  patched: ${patched.wall.toFixed(0)} s wall; series apply (patch stage) ${fmt(seconds(patched.res, 'patch'))}, compile after the series (ccache warm) ${fmt(seconds(patched.res, 'compile'))}, validate ${fmt(seconds(patched.res, 'validate'))}`)
  console.log(`           ${verdict(patched.res)}`)
  rows.push(`| ${line} | ${fmt(seconds(patched.res, 'patch'))} | ${fmt(seconds(control.res, 'compile'))} | ${control.res.validation?.verdict ?? 'n/a'} | ${patched.res.validation?.verdict ?? 'n/a'} |`)
}
console.log('\n| line | series apply | cold kernel build | control | patched |\n|---|---|---|---|---|')
for (const r of rows) console.log(r)
