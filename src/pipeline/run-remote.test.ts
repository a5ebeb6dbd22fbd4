import {generateKeyPairSync} from 'node:crypto'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {countingStages, testContext} from '../../test/fixtures/counting-stages.js'
import {inputRefusal} from '../../test/helpers/refusal.js'
import {startRegistry, type TestRegistry} from '../../test/helpers/registry.js'
import {parseOciReference} from '../remote/oci/reference.js'
import {StageCache} from './cache.js'
import {openRemoteCaches} from './open-remote-cache.js'
import {parseOptions, type BuildOptions} from './options.js'
import {planBuild} from './plan.js'
import {runStages} from './run.js'

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
  async function build(name: string, options: BuildOptions, cacheDir = join(dir, name)) {
    const ctx = {...testContext(cacheDir), options}
    const runs: string[] = []
    const warnings: string[] = []
    const r = await runStages(ctx, new StageCache(cacheDir), countingStages({}, runs), {renderer: 'silent', remote: openRemoteCaches(options, env), warn: (l) => warnings.push(l)})
    return {runs, warnings, r, cacheDir}
  }
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

  it('an oci:// reference that does not parse is refused with the options, exit 2', () => {
    const e = inputRefusal(() => parseOptions(['cache-from'], {'cache-from': 'oci://registry.example/Team:tag'}))
    expect(e.exitCode).toBe(2)
    expect(e.message).toMatch(/^--cache-from: --cache-from "oci:\/\/registry.example\/Team:tag" is not a registry repository/)
  })
})
