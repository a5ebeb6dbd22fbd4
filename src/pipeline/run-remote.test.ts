import {generateKeyPairSync, randomBytes} from 'node:crypto'
import {existsSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it, vi} from 'vitest'

import {countingStages, testContext} from '../../test/fixtures/counting-stages.js'
import {inputRefusal} from '../../test/helpers/refusal.js'
import {startRegistry, type TestRegistry} from '../../test/helpers/registry.js'
import {parseOciReference} from '../remote/oci/reference.js'
import {StageCache} from './cache.js'
import {openRemoteCaches} from './open-remote-cache.js'
import {parseOptions, type BuildOptions} from './options.js'
import {planBuild} from './plan.js'
import {runStages} from './run.js'
import Publish from '../commands/publish.js'
import {STAGES_PUBLISH_READS} from '../publish/index.js'
import {OciClient} from '../remote/oci/client.js'
import {sha256} from '../util/fsx.js'
import {repoRoot} from '../../test/helpers/paths.js'
import type {BuildRecord} from './build-record.js'
import {completeFromRegistry} from './complete-record.js'
import {entryTag} from './remote-cache.js'
import type {StageResult, StageResults} from './results.js'
import {STAGE_NAMES, type StageName} from './stage-names.js'

describe('a build with --cache-to and --cache-from against docker-registry 2.8', () => {
  let reg: TestRegistry
  let dir: string
  let env: NodeJS.ProcessEnv
  const keys: Record<string, {key: string; pub: string}> = {}

  beforeAll(async () => {
    reg = await startRegistry()
    dir = await mkdtemp(join(tmpdir(), 'cvm-run-remote-'))
    for (const name of ['alice', 'bob']) {
      const pair = generateKeyPairSync('ed25519')
      keys[name] = {key: join(dir, `${name}.pem`), pub: join(dir, `${name}.pub`)}
      await writeFile(keys[name].key, pair.privateKey.export({type: 'pkcs8', format: 'pem'}), {mode: 0o600})
      await writeFile(keys[name].pub, pair.publicKey.export({type: 'spki', format: 'pem'}))
    }
    // credentials as podman and skopeo keep them
    const auth = join(dir, 'auth.json')
    await writeFile(auth, JSON.stringify({auths: {[reg.host]: {auth: Buffer.from(`${reg.user}:${reg.password}`).toString('base64')}}}))
    env = {REGISTRY_AUTH_FILE: auth}
  }, 60_000)
  afterAll(async () => {
    await reg?.stop()
    if (dir) await rm(dir, {recursive: true, force: true})
  })

  /** One runner: its own empty cache (or the one given), the options given, the warnings it printed and the stages it ran. */
  async function build(name: string, options: BuildOptions, cacheDir = join(dir, name), o: {read?: StageName[]; inputs?: Record<string, string>} = {}) {
    const ctx = {...testContext(cacheDir), options}
    const runs: string[] = []
    const warnings: string[] = []
    const r = await runStages(ctx, new StageCache(cacheDir), countingStages(o.inputs ?? {}, runs), {renderer: 'silent', remote: openRemoteCaches(options, env), warn: (l) => warnings.push(l), read: o.read})
    return {runs, warnings, r, cacheDir}
  }
  /** The stages a cache holds an entry of: what was pulled or built into it. */
  const entriesIn = (cacheDir: string) => (existsSync(join(cacheDir, 'stages')) ? readdirSync(join(cacheDir, 'stages')).filter((s) => readdirSync(join(cacheDir, 'stages', s)).length > 0).sort() : [])
  const repo = (path: string) => parseOciReference(`oci://${reg.host}/${path}`, '--cache-to')

  it('one runner pushes every stage; another, trusting its key, runs none and says remote in plan', async () => {
    const a = await build('a', {cacheTo: repo('team/stages'), cacheKey: keys.alice.key, cacheCa: reg.caFile})
    expect(a.runs.sort()).toEqual(['assemble', 'base', 'kernel-source', 'patch'])
    expect(a.warnings).toEqual([])

    const options: BuildOptions = {cacheFrom: repo('team/stages'), cacheTrust: [keys.alice.pub], cacheCa: reg.caFile}
    const cacheDir = join(dir, 'b')
    const plan = await planBuild({...testContext(cacheDir), options}, new StageCache(cacheDir), countingStages({}, []), [], openRemoteCaches(options, env))
    expect(plan.map((p) => [p.name, p.cached, p.reason])).toEqual(plan.map((p) => [p.name, false, `remote: in oci://${reg.host}/team/stages, signed by a trusted key`]))

    const b = await build('b', options)
    expect(b.runs).toEqual([])
    expect(b.warnings).toEqual([])
    expect(b.r.outcomes.map((o) => o.status)).toEqual(['remote', 'remote', 'remote', 'remote'])
    for (const o of b.r.outcomes) {
      const pushed = a.r.outcomes.find((x) => x.stage === o.stage)!
      expect(await readFile(join(o.dir, 'out.txt'), 'utf8')).toBe(await readFile(join(pushed.dir, 'out.txt'), 'utf8'))
    }
    // pulled entries are local entries: the next build takes them from its own cache
    expect((await build('b', options)).r.outcomes.map((o) => o.status)).toEqual(['cached', 'cached', 'cached', 'cached'])
  }, 120_000)

  it('an entry signed by a key it does not trust is built here, one warning line per stage saying why', async () => {
    const c = await build('c', {cacheFrom: repo('team/stages'), cacheTrust: [keys.bob.pub], cacheCa: reg.caFile})
    expect(c.runs.sort()).toEqual(['assemble', 'base', 'kernel-source', 'patch'])
    expect(c.warnings).toHaveLength(4)
    for (const w of c.warnings) expect(w).toMatch(/^stage [a-z-]+: not taken from oci:\/\/127\.0\.0\.1:\d+\/team\/stages, built here: .* which is not in the trusted list$/)
  }, 120_000)

  it('a registry that is down, or refuses the push, fails nothing: the stages run, one warning line each', async () => {
    const closed = createServer()
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r))
    const port = (closed.address() as {port: number}).port
    await new Promise((r) => closed.close(r))
    const down = await build('down', {cacheFrom: parseOciReference(`oci://127.0.0.1:${port}/team/stages`, '--cache-from'), cacheTrust: [keys.alice.pub], cacheCa: reg.caFile})
    expect(down.runs).toHaveLength(4)
    // one line for the build: base and kernel-source may ask at once, but only the first to hear no says so, and nobody asks after
    expect(down.warnings).toHaveLength(1)
    for (const w of down.warnings) expect(w).toMatch(/not asked again in this build: .*ECONNREFUSED/)

    // no credentials for this host: every push is refused by the registry, and the build still succeeds
    const savedEnv = env
    env = {REGISTRY_AUTH_FILE: join(dir, 'none.json')}
    try {
      const refused = await build('refused', {cacheTo: repo('team/other'), cacheKey: keys.alice.key, cacheCa: reg.caFile})
      expect(refused.runs).toHaveLength(4)
      expect(refused.warnings.filter((w) => /not pushed to .*needs credentials/.test(w))).toHaveLength(4)
      expect(refused.warnings.join('\n')).not.toContain(reg.password)
    } finally {
      env = savedEnv
    }
  }, 120_000)

  it('--cache-to pushes local hits the registry lacks', async () => {
    const again = await build('again', {cacheTo: repo('team/fresh'), cacheKey: keys.alice.key, cacheCa: reg.caFile}, join(dir, 'a'))
    expect(again.runs).toEqual([])
    expect(again.warnings).toEqual([])
    const reader = openRemoteCaches({cacheFrom: repo('team/fresh'), cacheTrust: [keys.alice.pub], cacheCa: reg.caFile}, env).readers[0]
    for (const o of again.r.outcomes) expect(await reader.probe(o.stage, o.key)).toEqual({ok: true})
  }, 120_000)

  it('a build whose every stage is in the registry pulls only the stages read; a stage that must run after all pulls what it reads', async () => {
    const inputs = {assemble: 'pull-only-what-is-read'}
    const a = await build('read-a', {cacheTo: repo('team/read'), cacheKey: keys.alice.key, cacheCa: reg.caFile}, undefined, {inputs})
    expect(a.runs).toHaveLength(4)
    const options: BuildOptions = {cacheFrom: repo('team/read'), cacheTrust: [keys.alice.pub], cacheCa: reg.caFile}

    // assemble is read (publish reads the disk); base, kernel-source and patch only by assemble, which is pulled, not run
    const b = await build('read-b', options, undefined, {read: ['assemble'], inputs})
    expect(b.runs).toEqual([])
    expect(b.warnings).toEqual([])
    expect(b.r.outcomes.map((o) => [o.stage, o.status])).toEqual([['base', 'remote-only'], ['kernel-source', 'remote-only'], ['patch', 'remote-only'], ['assemble', 'remote']])
    expect(entriesIn(b.cacheDir)).toEqual(['assemble'])
    // the results left in the registry are the signed ones (the build record and publish read them), at the path an entry would have
    for (const name of ['base', 'kernel-source', 'patch'] as const) {
      expect(b.r.results[name]?.meta).toEqual(a.r.results[name]?.meta)
      expect(b.r.results[name]?.dir).toBe(new StageCache(b.cacheDir).entryDir(name, a.r.results[name]!.key))
    }
    expect(await readFile(join(b.r.results.assemble!.dir, 'out.txt'), 'utf8')).toBe(await readFile(join(a.r.results.assemble!.dir, 'out.txt'), 'utf8'))

    // assemble's layer is damaged in the registry: its lookup passes (signature, manifest, result.json), its pull does not;
    // it runs here, so base and patch, which it reads, are pulled after all; kernel-source, read by nobody, stays there
    const client = new OciClient(repo('team/read'), {caFile: reg.caFile, credentials: {user: reg.user, password: reg.password, source: 'test'}})
    const layer = (await client.getManifest(entryTag('assemble', a.r.results.assemble!.key)))!.manifest.layers[0].digest
    const hex = layer.slice('sha256:'.length)
    const data = join(reg.dir, 'storage', 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data')
    const bytes = readFileSync(data)
    bytes[bytes.length >> 1] ^= 0xff
    writeFileSync(data, bytes)
    const c = await build('read-c', options, undefined, {read: ['assemble'], inputs})
    expect(c.runs).toEqual(['assemble'])
    expect(c.warnings).toEqual([expect.stringMatching(/^stage assemble: not taken from .*team\/read, built here: .*not the digest asked for: refused$/)])
    expect(c.r.outcomes.map((o) => [o.stage, o.status])).toEqual([['base', 'remote'], ['kernel-source', 'remote-only'], ['patch', 'remote'], ['assemble', 'ran']])
    expect(entriesIn(c.cacheDir)).toEqual(['assemble', 'base', 'patch'])
    expect(await readFile(join(c.r.results.assemble!.dir, 'out.txt'), 'utf8')).toBe(await readFile(join(a.r.results.assemble!.dir, 'out.txt'), 'utf8'))
  }, 120_000)

  it('publish completes a build record from the registry: only the entries it reads (compile, assemble, validate), verified', async () => {
    // runner A's build: one small entry per stage, pushed signed; its record names them in A's cache
    const aCache = new StageCache(join(dir, 'record-a'))
    const stages: StageResults = {}
    const pusher = openRemoteCaches({cacheTo: repo('team/record'), cacheKey: keys.alice.key, cacheCa: reg.caFile}, env).pusher!
    for (const name of STAGE_NAMES) {
      const key = sha256(`record:${name}`)
      const temp = await aCache.makeTemp(name, key)
      await writeFile(join(temp, `${name}.bin`), randomBytes(20_000))
      // publish reads the validation's verdict and checks before the disk
      const meta = name === 'validate' ? {verdict: 'passed', modes: ['emulated'], checks: [{mode: 'emulated', name: 'booted-kernel', verdict: 'pass', evidence: 'Linux'}], when: '', hostKind: 'local'} : {stage: name, size: 20_000}
      const r = await aCache.commit(name, key, temp, meta)
      ;(stages as Record<string, StageResult>)[name] = r
      expect(await pusher.push(aCache, name, key)).toBe('pushed')
    }
    const record = {recipeId: 'record-test', recipeDigest: 'x', toolVersion: '0', sourceDateEpoch: 0, finishedAt: '', stages} as unknown as BuildRecord
    const bytesOf = async (r: StageResults, name: StageName) => readFile(join(r[name]!.dir, `${name}.bin`))

    // runner B: another cache, A's directories not here
    const gone = {...record, stages: Object.fromEntries(Object.entries(stages).map(([n, r]) => [n, {...r, dir: join(dir, 'elsewhere', n)}]))} as BuildRecord
    const bCache = new StageCache(join(dir, 'record-b'))
    const warnings: string[] = []
    const remote = openRemoteCaches({cacheFrom: repo('team/record'), cacheTrust: [keys.alice.pub], cacheCa: reg.caFile}, env)
    const done = await completeFromRegistry(gone, bCache, remote, STAGES_PUBLISH_READS, (l) => warnings.push(l))
    expect(warnings).toEqual([])
    expect(done.pulled).toEqual(['compile', 'assemble', 'validate'])
    expect(entriesIn(bCache.root)).toEqual(['assemble', 'compile', 'validate'])
    for (const name of STAGES_PUBLISH_READS) {
      expect(done.record.stages[name]!.dir).toBe(bCache.entryDir(name, stages[name]!.key))
      expect((await bytesOf(done.record.stages, name)).equals(await bytesOf(stages, name))).toBe(true)
    }
    expect(done.record.stages.base!.dir).toBe(join(dir, 'elsewhere', 'base'))
    // again: taken from B's cache, nothing pulled
    expect((await completeFromRegistry(gone, bCache, remote, STAGES_PUBLISH_READS, (l) => warnings.push(l))).pulled).toEqual([])

    // a reader that trusts another key pulls nothing, and says why per stage
    const cCache = new StageCache(join(dir, 'record-c'))
    const untrusting = openRemoteCaches({cacheFrom: repo('team/record'), cacheTrust: [keys.bob.pub], cacheCa: reg.caFile}, env)
    const refused = await completeFromRegistry(gone, cCache, untrusting, STAGES_PUBLISH_READS, (l) => warnings.push(l))
    expect(refused.pulled).toEqual([])
    expect(entriesIn(cCache.root)).toEqual([])
    expect(warnings).toHaveLength(3)
    for (const w of warnings) expect(w).toMatch(/^stage (compile|assemble|validate): .* is not here, and no registry gave its entry [0-9a-f]{12}: oci:\/\/\S+ \w+-[0-9a-f]{64}: it is signed by key [0-9a-f]{16}, which is not in the trusted list$/)

    // the command: publish --cache-from with that key reaches the same refusal, then says the disk is missing (exit 2)
    const path = join(dir, 'record-b.json')
    await writeFile(path, JSON.stringify(gone))
    const stderr: string[] = []
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => (stderr.push(String(chunk)), true))
    const saved = process.env.REGISTRY_AUTH_FILE
    process.env.REGISTRY_AUTH_FILE = env.REGISTRY_AUTH_FILE
    try {
      const e = await Publish.run([path, '--cache-dir', join(dir, 'record-d'), '--cache-from', `oci://${reg.host}/team/record`, '--cache-trust', keys.bob.pub, '--cache-ca', reg.caFile, '--publish', `dir:${join(dir, 'out')}`], repoRoot).catch((x: Error & {exitCode?: number}) => x)
      expect(e).toMatchObject({oclif: {exit: 2}})
    } finally {
      spy.mockRestore()
      if (saved === undefined) delete process.env.REGISTRY_AUTH_FILE
      else process.env.REGISTRY_AUTH_FILE = saved
    }
    expect(stderr.join('')).toMatch(/warning: stage assemble: .* is not here, and no registry gave its entry .*which is not in the trusted list/)
    expect(stderr.join('')).toMatch(/build record of record-test has no assembled disk/)
  }, 120_000)

  it('an oci:// reference that does not parse is refused with the options, exit 2', () => {
    const e = inputRefusal(() => parseOptions(['cache-from'], {'cache-from': 'oci://registry.example/Team:tag'}))
    expect(e.exitCode).toBe(2)
    expect(e.message).toMatch(/^--cache-from: --cache-from "oci:\/\/registry.example\/Team:tag" is not a registry repository/)
  })
})
