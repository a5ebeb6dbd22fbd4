// Benchmark for a team's runners sharing the stage cache in an OCI registry and compiles in Redis
// (issue #27; docs/ci.md, docs/remote-cache.md, docs/sharing-compiles.md). On this machine, against
// docker-registry and redis-server started here on 127.0.0.1, three builds of debian-12 through the CLI:
//   runner A: an empty cache and ccache; --cache-to the registry, --ccache-remote the Redis
//   runner B: another empty cache and ccache, --cache-from the same registry (trusting A's key)
//   runner B again after a change to the 6.1 series that touches one C file (init/cvm_marker.c)
// and prints, as ratios of one run: B's wall time over A's (goal <= 0.05), whether B's disk is A's byte
// for byte (sha256), and so are its published format files, B's compile after the change over A's compile (goal <= 0.25, through ccache's
// remote store: B never compiled, so its local ccache is empty), and per stage pulled its bytes and
// seconds. Fails (exit 1) when a build fails or B's disk or published files are not A's; takes 25
// minutes or more of 2 cores.
// Run: npm run bench -- team-cache   (BENCH_KEEP=1 keeps the scratch directory)
import {execFileSync, spawnSync} from 'node:child_process'
import {generateKeyPairSync} from 'node:crypto'
import {cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {availableParallelism, cpus} from 'node:os'
import {join} from 'node:path'

import {startRedis} from '../test/helpers/redis.js'
import {startRegistry} from '../test/helpers/registry.js'
import {entryTag} from '../src/pipeline/remote-cache.js'
import type {StageName} from '../src/pipeline/stage-names.js'
import {OciClient} from '../src/remote/oci/client.js'
import {parseOciReference} from '../src/remote/oci/reference.js'

const repo = join(import.meta.dirname, '..')
const RECIPE = 'debian-12'

interface Outcome {stage: StageName; key: string; status: 'ran' | 'cached' | 'remote' | 'remote-only'; seconds: number; dir: string}
interface Built {label: string; wall: number; stages: Outcome[]; disk: {path: string; sha256: string}; files: Record<string, string>}

const scratch = mkdtempSync('/var/tmp/cvm-bench-team-cache-')
const registry = await startRegistry()
const redis = await startRedis()
try {
  console.log(`host: ${cpus()[0]?.model ?? '?'}, ${cpus().length} cores (make -j${availableParallelism()}); scratch ${scratch}`)
  console.log(`registry ${registry.url} (docker-registry, htpasswd, TLS); redis ${redis.url}`)
  execFileSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', join(repo, 'tsconfig.json')])

  // runner A's signing key; runner B trusts its public half
  const pair = generateKeyPairSync('ed25519')
  const key = join(scratch, 'runner-a.pem')
  const pub = join(scratch, 'runner-a.pub')
  writeFileSync(key, pair.privateKey.export({type: 'pkcs8', format: 'pem'}), {mode: 0o600})
  writeFileSync(pub, pair.publicKey.export({type: 'spki', format: 'pem'}))
  // the registry's credentials, as a runner's docker config gives them (docs/ci.md)
  const auth = join(scratch, 'auth.json')
  writeFileSync(auth, JSON.stringify({auths: {[registry.host]: {auth: Buffer.from(`${registry.user}:${registry.password}`).toString('base64')}}}), {mode: 0o600})
  const ref = `oci://${registry.host}/team/stages`
  const common = ['--cache-ca', registry.caFile, '--ccache-remote', redis.url]
  const client = new OciClient(parseOciReference(ref, '--cache-from'), {caFile: registry.caFile, credentials: {user: registry.user, password: registry.password, source: auth}})

  const a = build('runner A: from nothing, pushing', join(scratch, 'a'), repo, ['--cache-to', ref, '--cache-key', key, ...common])
  const aCompile = a.stages.find((s) => s.stage === 'compile')
  if (aCompile?.status !== 'ran') throw new Error(`runner A's compile did not run (${aCompile?.status}): its cache was not empty`)
  console.log(`  Redis after A: ${await redis.keys()} keys (ccache objects)`)

  const bCache = join(scratch, 'b')
  const b = build('runner B: empty cache and ccache, the same registry', bCache, repo, ['--cache-from', ref, '--cache-trust', pub, ...common])
  await pulled(b)
  const same = a.disk.sha256 === b.disk.sha256
  console.log(`  disk.raw: A ${a.disk.sha256}`)
  console.log(`            B ${b.disk.sha256}  ${same ? 'identical' : 'DIFFERENT'}`)
  // B's publish takes A's format files from the registry (docs/remote-cache.md "Publish's formats"): the same bytes
  const sameFiles = Object.entries(a.files).every(([name, sha]) => b.files[name] === sha) && Object.keys(b.files).length === Object.keys(a.files).length
  console.log(`  published files: ${Object.keys(b.files).join(', ')}: ${sameFiles ? 'the same sha256 as A' : 'DIFFERENT from A'}`)

  // the 6.1 series changed in one patch that touches one C file: a copy of the project's data
  const root = join(scratch, 'root')
  for (const d of ['recipes', 'kernels', 'templates']) cpSync(join(repo, d), join(root, d), {recursive: true})
  const marker = join(root, 'kernels', '6.1', 'cvm-marker.patch')
  const before = readFileSync(marker, 'utf8')
  const after = before.replace('applied\\n', 'applied (bench team-cache)\\n')
  if (after === before) throw new Error(`${marker}: the marker line to change is not there; update bench/team-cache.ts`)
  writeFileSync(marker, after)
  const b2 = build('runner B after a change to the 6.1 series (init/cvm_marker.c)', bCache, root, ['--cache-from', ref, '--cache-trust', pub, ...common])
  await pulled(b2)
  const b2Compile = b2.stages.find((s) => s.stage === 'compile')
  const ccacheLine = b2Compile ? readLog(b2Compile.dir).find((l) => l.includes('ccache:')) : undefined
  console.log(`  ${ccacheLine?.trim() ?? 'ccache: no line in the compile stage log'}`)

  const wallRatio = b.wall / a.wall
  const compileRatio = b2Compile?.status === 'ran' ? b2Compile.seconds / aCompile.seconds : NaN
  console.log('\nfigures (one run each):')
  console.log(`  B wall / A wall                 = ${wallRatio.toFixed(3)} (${b.wall.toFixed(1)} s / ${a.wall.toFixed(1)} s; goal <= 0.05) ${wallRatio <= 0.05 ? 'met' : 'MISSED'}`)
  console.log(`  B disk = A disk (sha256)        = ${same ? 'yes' : 'NO'}`)
  console.log(`  B' compile / A compile          = ${compileRatio.toFixed(3)} (${b2Compile?.seconds.toFixed(1)} s / ${aCompile.seconds.toFixed(1)} s; goal <= 0.25) ${compileRatio <= 0.25 ? 'met' : 'MISSED'}`)
  console.log(`  B's published files = A's       = ${sameFiles ? 'yes' : 'NO'}`)
  if (!same || !sameFiles) process.exitCode = 1

  /** Prints each stage a build took from the registry: the bytes of its signature, manifest, config and layer, and its seconds. */
  async function pulled(r: Built): Promise<void> {
    let total = 0
    for (const s of r.stages.filter((o) => o.status === 'remote')) {
      let bytes = 0
      for (const tag of [`${entryTag(s.stage, s.key)}.sig`, entryTag(s.stage, s.key)]) {
        const m = await client.getManifest(tag)
        if (!m) throw new Error(`${ref} has no ${tag}, which ${r.label} says it pulled`)
        bytes += m.bytes.length + m.manifest.config.size + m.manifest.layers.reduce((n, l) => n + l.size, 0)
      }
      total += bytes
      console.log(`  pulled ${s.stage.padEnd(14)} ${mib(bytes).padStart(10)} in ${s.seconds.toFixed(1).padStart(6)} s (${(bytes / 2 ** 20 / Math.max(s.seconds, 0.001)).toFixed(0)} MiB/s)`)
    }
    console.log(`  pulled in all: ${mib(total)} (${total} bytes)`)
    const left = r.stages.filter((o) => o.status === 'remote-only').map((o) => o.stage)
    if (left.length) console.log(`  left in the registry (nothing here reads them): ${left.join(', ')}`)
  }
} finally {
  // the registry's own log, for a push or pull that warned (kept with the scratch directory)
  if (process.env.BENCH_KEEP) writeFileSync(join(scratch, 'registry.log'), registry.log())
  await registry.stop()
  await redis.stop()
  if (process.env.BENCH_KEEP) console.log(`kept ${scratch}`)
  else rmSync(scratch, {recursive: true, force: true})
}

/** One runner's `cvm-image build debian-12 --json` in its own cache, publishing to a directory of its own. */
function build(label: string, cacheDir: string, root: string, extra: string[]): Built {
  const out = `${cacheDir}-out`
  mkdirSync(out, {recursive: true})
  const t0 = Date.now()
  const r = spawnSync(process.execPath, [join(repo, 'bin/run.js'), 'build', RECIPE, '--root', root, '--cache-dir', cacheDir, '--publish', out, '--json', ...extra], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    env: {...process.env, REGISTRY_AUTH_FILE: join(scratch, 'auth.json')},
  })
  const wall = (Date.now() - t0) / 1000
  if (r.status !== 0) {
    console.error(r.stderr.slice(-5000), r.stdout.slice(-3000))
    throw new Error(`${label}: build exited ${r.status}`)
  }
  const res = JSON.parse(r.stdout) as {stages: Outcome[]; published?: {location: string; files: {name: string; sha256: string}[]}}
  console.log(`\n${label}: ${wall.toFixed(1)} s wall`)
  for (const s of res.stages) console.log(`  ${s.stage.padEnd(14)} ${s.status.padEnd(6)} ${s.seconds.toFixed(1).padStart(7)} s`)
  const warnings = r.stderr.split('\n').filter((l) => /warn|registry/i.test(l))
  for (const w of warnings.slice(0, 10)) console.log(`  stderr: ${w}`)
  const raw = res.published?.files.find((f) => f.name.endsWith('.raw'))
  if (!res.published || !raw) throw new Error(`${label}: the build published no .raw disk`)
  const path = join(res.published.location.replace(/^dir:/, ''), raw.name)
  if (!existsSync(path)) throw new Error(`${label}: ${path} is not there`)
  // hashed here, not taken from the manifest: the bytes on disk are what is compared
  const sha256 = execFileSync('sha256sum', [path], {encoding: 'utf8'}).split(' ')[0]
  // the release's own files but its manifest, provenance and sums (they name the build's time and cache)
  const files = Object.fromEntries(res.published.files.filter((f) => /\.(raw|qcow2|tar\.gz)$/.test(f.name)).map((f) => [f.name, f.sha256]))
  return {label, wall, stages: res.stages, disk: {path, sha256}, files}
}

function readLog(dir: string): string[] {
  const f = join(dir, 'stage.log')
  return existsSync(f) ? readFileSync(f, 'utf8').split('\n') : []
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`
}
