import {generateKeyPairSync} from 'node:crypto'
import {existsSync} from 'node:fs'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {repoRoot} from '../../test/helpers/paths.js'
import {startRegistry, type TestRegistry} from '../../test/helpers/registry.js'
import {StageCache} from '../pipeline/cache.js'
import {loadCacheSigner} from '../pipeline/cache-signature.js'
import {RemoteStageCache} from '../pipeline/remote-cache.js'
import {OciClient} from '../remote/oci/client.js'
import {parseOciReference} from '../remote/oci/reference.js'
import Plan, {type PlanResult} from './plan.js'

describe('cvm-image plan --cache-from: per stage, local, remote or runs', () => {
  let reg: TestRegistry
  let dir: string
  beforeAll(async () => {
    reg = await startRegistry()
    dir = await mkdtemp(join(tmpdir(), 'cvm-plan-remote-'))
  }, 60_000)
  afterAll(async () => {
    await reg?.stop()
    if (dir) await rm(dir, {recursive: true, force: true})
  })

  it('names the stage a trusted runner pushed as remote, the others as runs, and writes nothing', async () => {
    const pair = generateKeyPairSync('ed25519')
    const key = join(dir, 'runner.pem')
    const pub = join(dir, 'runner.pub')
    await writeFile(key, pair.privateKey.export({type: 'pkcs8', format: 'pem'}), {mode: 0o600})
    await writeFile(pub, pair.publicKey.export({type: 'spki', format: 'pem'}))
    const auth = join(dir, 'auth.json')
    await writeFile(auth, JSON.stringify({auths: {[reg.host]: {auth: Buffer.from(`${reg.user}:${reg.password}`).toString('base64')}}}))
    process.env.REGISTRY_AUTH_FILE = auth
    const cacheDir = join(dir, 'cache')
    const args = ['debian-12', '--root', repoRoot, '--cache-dir', cacheDir, '--cache-from', `oci://${reg.host}/team/stages`, '--cache-trust', pub, '--cache-ca', reg.caFile, '--json']
    const before = (await Plan.run(args, repoRoot)) as PlanResult
    expect(before.stages.map((s) => s.source)).toEqual(before.stages.map(() => 'runs'))

    // another runner built debian-12's base and pushed it under the key this plan computes
    const baseKey = before.stages[0].key
    const other = new StageCache(join(dir, 'other'))
    const temp = await other.makeTemp('base', baseKey)
    await writeFile(join(temp, 'rootfs.tar'), 'not really a rootfs')
    await other.commit('base', baseKey, temp, {})
    const client = new OciClient(parseOciReference(`oci://${reg.host}/team/stages`, '--cache-to'), {caFile: reg.caFile, credentials: {user: reg.user, password: reg.password, source: auth}})
    await new RemoteStageCache(client, {signer: loadCacheSigner(key), trusted: []}).push(other, 'base', baseKey)

    const after = (await Plan.run(args, repoRoot)) as PlanResult
    expect(after.stages.map((s) => [s.stage, s.source])).toEqual(after.stages.map((s) => [s.stage, s.stage === 'base' ? 'remote' : 'runs']))
    expect(after.stages[0].reason).toBe(`remote: in oci://${reg.host}/team/stages, signed by a trusted key`)
    expect(existsSync(cacheDir)).toBe(false)

    // the trusted keys from CVM_IMAGE_CACHE_TRUST (paths separated by colons) or the options config file, not the flag
    const stranger = join(dir, 'stranger.pub')
    await writeFile(stranger, generateKeyPairSync('ed25519').publicKey.export({type: 'spki', format: 'pem'}))
    const noFlag = args.filter((a, i) => a !== '--cache-trust' && args[i - 1] !== '--cache-trust')
    // no options config but the one given: XDG_CONFIG_HOME is a folder without one
    const sources = async (env: Record<string, string>) => {
      const saved = {...process.env}
      delete process.env.CVM_IMAGE_CONFIG
      delete process.env.CVM_IMAGE_CACHE_TRUST
      Object.assign(process.env, {XDG_CONFIG_HOME: dir, ...env})
      try {
        return ((await Plan.run(noFlag, repoRoot)) as PlanResult).stages.find((s) => s.stage === 'base')!.source
      } finally {
        for (const k of ['CVM_IMAGE_CONFIG', 'CVM_IMAGE_CACHE_TRUST', 'XDG_CONFIG_HOME']) {
          if (saved[k] === undefined) delete process.env[k]
          else process.env[k] = saved[k]
        }
      }
    }
    expect(await sources({CVM_IMAGE_CACHE_TRUST: `${stranger}:${pub}`})).toBe('remote')
    expect(await sources({CVM_IMAGE_CACHE_TRUST: stranger})).toBe('runs')
    const config = join(dir, 'config.yaml')
    await writeFile(config, 'cache-trust: [stranger.pub, runner.pub]\n')
    expect(await sources({CVM_IMAGE_CONFIG: config})).toBe('remote')
    await writeFile(config, 'cache-trust: stranger.pub\n')
    expect(await sources({CVM_IMAGE_CONFIG: config})).toBe('runs')
  }, 120_000)
})
