// The whole-kernel proof of icecream's reproducibility (issue #27; docs/sharing-compiles.md "Icecream"):
// debian-12's kernel built twice through the CLI from one cache:
//   1. `build debian-12 --until compile`: every object compiled here, ccache empty
//   2. the same with `--force compile --icecc-scheduler HOST:PORT`, ccache emptied again, against an
//      icecream farm started here: a scheduler and a compile host in a network namespace of its own
//      (test/helpers/icecream.ts), so that ccache's misses go to icecc and some of them to the other host
// and prints both vmlinuz sha256 (they must be equal), the stage log's icecream line (how many
// compiles the other host did) and both compile times. On one 2-core machine the two daemons share
// the same cores: the time says nothing of a real farm's speed, the sha256 says everything of its
// bytes. Needs root (network namespaces) and Debian's icecc; takes 25 minutes or more of 2 cores.
// Exits 1 when the sha256 differ or no compile went to the other host.
// Run: npm run bench -- icecream-kernel   (BENCH_KEEP=1 keeps the scratch directory)
import {execFileSync, spawnSync} from 'node:child_process'
import {existsSync, mkdtempSync, readFileSync, renameSync, rmSync} from 'node:fs'
import {availableParallelism, cpus} from 'node:os'
import {join} from 'node:path'

import {icecreamSkipReason, startIcecreamFarm} from '../test/helpers/icecream.js'

const repo = join(import.meta.dirname, '..')
const RECIPE = 'debian-12'

const skip = icecreamSkipReason()
if (skip) {
  console.log(`skipped: ${skip}`)
  process.exit(0)
}

interface Compiled {label: string; wall: number; seconds: number; vmlinuzSha256: string; log: string[]}

const scratch = mkdtempSync('/var/tmp/cvm-bench-icecream-')
const cache = join(scratch, 'cache')
let failed = false
try {
  console.log(`host: ${cpus()[0]?.model ?? '?'}, ${cpus().length} cores (make -j${availableParallelism()}); scratch ${scratch}`)
  execFileSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', join(repo, 'tsconfig.json')])

  const here = compile('without icecream: every object compiled here', [])
  // ccache emptied: every object is a miss again, and a miss goes to icecc
  renameSync(join(cache, 'ccache'), join(scratch, 'ccache-of-the-first-build'))
  const farm = await startIcecreamFarm()
  let there: Compiled
  try {
    console.log(`icecream farm: scheduler ${farm.scheduler.host}:${farm.scheduler.port}, compile host ${farm.remote.address} (a network namespace of its own)`)
    there = compile('through icecream', ['--force', 'compile', '--icecc-scheduler', `${farm.scheduler.host}:${farm.scheduler.port}`, '--jobs', String(2 * availableParallelism())])
  } finally {
    await farm.stop()
  }
  const iceLine = there.log.find((l) => l.includes('icecream:')) ?? 'icecream: no line in the stage log'
  const sent = /(\d+) compiles sent to other hosts/.exec(iceLine)
  const ccacheLine = there.log.find((l) => l.includes('ccache:'))
  console.log(`\n  ${iceLine.trim()}`)
  if (ccacheLine) console.log(`  ${ccacheLine.trim()}`)
  const same = here.vmlinuzSha256 === there.vmlinuzSha256
  console.log('\nfigures (one run each):')
  console.log(`  vmlinuz without icecream       = ${here.vmlinuzSha256}`)
  console.log(`  vmlinuz through icecream       = ${there.vmlinuzSha256}  ${same ? 'identical' : 'DIFFERENT'}`)
  console.log(`  compiles done by the other host = ${sent ? sent[1] : '?'}`)
  console.log(`  compile stage: ${here.seconds.toFixed(1)} s here, ${there.seconds.toFixed(1)} s through icecream (the same 2 cores: not a farm's speed)`)
  failed = !same || !sent || Number(sent[1]) === 0
} finally {
  if (process.env.BENCH_KEEP) console.log(`kept ${scratch}`)
  else rmSync(scratch, {recursive: true, force: true})
}
process.exitCode = failed ? 1 : 0

/** `cvm-image build debian-12 --until compile --json` in the bench's cache: the compile stage's time, vmlinuz sha256 and log. */
function compile(label: string, extra: string[]): Compiled {
  const t0 = Date.now()
  const r = spawnSync(process.execPath, [join(repo, 'bin/run.js'), 'build', RECIPE, '--cache-dir', cache, '--until', 'compile', '--json', ...extra], {encoding: 'utf8', maxBuffer: 64 << 20})
  const wall = (Date.now() - t0) / 1000
  if (r.status !== 0) {
    console.error(r.stderr.slice(-5000), r.stdout.slice(-3000))
    throw new Error(`${label}: build exited ${r.status}`)
  }
  const res = JSON.parse(r.stdout) as {stages: {stage: string; status: string; seconds: number; dir: string}[]}
  const c = res.stages.find((s) => s.stage === 'compile')
  if (!c || c.status !== 'ran') throw new Error(`${label}: the compile stage did not run (${c?.status})`)
  const kernel = JSON.parse(readFileSync(join(c.dir, 'kernel.json'), 'utf8')) as {vmlinuzSha256: string}
  // hashed here too: the bytes on disk are what is compared, not what the stage says of them
  const onDisk = execFileSync('sha256sum', [join(c.dir, 'vmlinuz')], {encoding: 'utf8'}).split(' ')[0]
  if (onDisk !== kernel.vmlinuzSha256) throw new Error(`${label}: vmlinuz hashes to ${onDisk}, kernel.json says ${kernel.vmlinuzSha256}`)
  const logFile = join(c.dir, 'stage.log')
  const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n') : []
  console.log(`\n${label}: ${wall.toFixed(1)} s wall, compile ${c.seconds.toFixed(1)} s, vmlinuz ${onDisk}`)
  return {label, wall, seconds: c.seconds, vmlinuzSha256: onDisk, log}
}
