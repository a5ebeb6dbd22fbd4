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
  }, 120_000)
})
