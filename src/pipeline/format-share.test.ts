import {generateKeyPairSync} from 'node:crypto'
import {existsSync, readdirSync, readFileSync, utimesSync, writeFileSync} from 'node:fs'
import {mkdir, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {makeGptDisk} from '../../test/helpers/disk-fixture.js'
import {startRegistry, type TestRegistry} from '../../test/helpers/registry.js'
import {formatKey, prepareFormats, type PrepareOptions} from '../formats/index.js'
import {sweepStaleTemps} from '../formats/staging.js'
import {OciClient} from '../remote/oci/client.js'
import {parseOciReference} from '../remote/oci/reference.js'
import {sha256File} from '../util/fsx.js'
import {loadCacheSigner, type CacheSigner} from './cache-signature.js'
import {registryFormatShare} from './format-share.js'
import {entryTag, RemoteStageCache} from './remote-cache.js'

// publish's format files through a real registry (docker-registry 2.8 on 127.0.0.1, TLS and
// htpasswd): runner A converts and pushes, runner B with nothing staged takes them instead of
// converting (docs/remote-cache.md "Publish's formats")
describe("publish's format files in an OCI registry (docker-registry 2.8)", () => {
  let reg: TestRegistry
  let dir: string
  let alice: CacheSigner
  let mallory: CacheSigner
  let disk: {path: string; sha256: string; size: number}

  const client = (host = reg.host) =>
    new OciClient(parseOciReference(`oci://${host}/team/stages`, '--cache-to'), {caFile: reg.caFile, credentials: {user: reg.user, password: reg.password, source: 'test'}, timeoutMs: 10_000})

  async function signer(name: string): Promise<CacheSigner> {
    const file = join(dir, `${name}.pem`)
    await writeFile(file, generateKeyPairSync('ed25519').privateKey.export({type: 'pkcs8', format: 'pem'}), {mode: 0o600})
    return loadCacheSigner(file)
  }

  /** One runner's publish of the disk's formats: its own staging directory, the registry through the share. */
  async function runner(name: string, remote: {readers: RemoteStageCache[]; pusher?: RemoteStageCache}) {
    const stagingDir = join(dir, name)
    const progress: string[] = []
    const warnings: string[] = []
    const opts: PrepareOptions = {stagingDir, sha256MemoDir: join(stagingDir, 'memo'), sourceDateEpoch: 1700000000, gceName: 'debian-12-1', progress: (l) => progress.push(l)}
    const share = registryFormatShare(remote, (l) => warnings.push(l))
    const artifacts = await prepareFormats(disk, ['raw', 'qcow2', 'gce'], {...opts, share})
    return {artifacts, progress, warnings, stagingDir}
  }

  beforeAll(async () => {
    reg = await startRegistry()
    dir = await mkdtemp(join(tmpdir(), 'cvm-format-share-'))
    alice = await signer('alice')
    mallory = await signer('mallory')
    disk = await makeGptDisk(join(dir, 'disk.raw'))
  }, 120_000)
  afterAll(async () => {
    await reg?.stop()
    if (dir) await rm(dir, {recursive: true, force: true})
  })

  it('runner A converts and pushes each format; runner B, trusting A, takes the same files from the registry and converts nothing', async () => {
    const a = await runner('runner-a', {readers: [new RemoteStageCache(client(), {signer: alice, trusted: []})], pusher: new RemoteStageCache(client(), {signer: alice, trusted: []})})
    expect(a.progress).toEqual(expect.arrayContaining(['converting to qcow2', 'converting to gce']))
    expect(a.warnings).toEqual([])
    // the tags name the format and its key: the disk's sha256, the build's time, the conversion's version
    for (const f of ['qcow2', 'gce'] as const) expect(await client().getManifest(entryTag(`format-${f}`, formatKey(f, disk.sha256, 1700000000)))).toBeDefined()

    const b = await runner('runner-b', {readers: [new RemoteStageCache(client(), {trusted: [alice.publicKey]})]})
    expect(b.progress.filter((l) => l.startsWith('converting'))).toEqual([])
    expect(b.progress.filter((l) => /taken from the registry/.test(l))).toHaveLength(2)
    expect(b.warnings).toEqual([])
    expect(b.artifacts.map((x) => [x.name, x.sha256, x.size])).toEqual(a.artifacts.map((x) => [x.name, x.sha256, x.size]))
    for (const [i, art] of b.artifacts.entries()) {
      if (art.format === 'raw') continue
      expect(art.path.startsWith(b.stagingDir)).toBe(true)
      expect(await sha256File(art.path)).toBe(a.artifacts[i].sha256)
      // the sha256 kept beside the staged file is the digest the registry's bytes were checked against
      expect((await readFile(`${art.path}.sha256`, 'utf8')).trim()).toBe(art.sha256)
    }
  }, 300_000)

  it('takes nothing signed by a key it does not trust, nor a file whose bytes are not its digest: it converts, says why, and leaves no partial file', async () => {
    const epoch = 1700000001
    const key = formatKey('qcow2', disk.sha256, epoch)
    // mallory's qcow2 of this very disk and time, pushed under the right tag with mallory's key
    const fake = join(dir, 'fake.qcow2')
    writeFileSync(fake, 'not a qcow2 of that disk')
    await new RemoteStageCache(client(), {signer: mallory, trusted: []}).pushFormat('format-qcow2', key, {path: fake, sha256: await sha256File(fake)}, {format: 'qcow2'})
    const stagingDir = join(dir, 'runner-c')
    const warnings: string[] = []
    const share = registryFormatShare({readers: [new RemoteStageCache(client(), {trusted: [alice.publicKey]})]}, (l) => warnings.push(l))!
    const arts = await prepareFormats(disk, ['qcow2'], {stagingDir, sha256MemoDir: join(stagingDir, 'memo'), sourceDateEpoch: epoch, gceName: 'x', share})
    expect(warnings.join('\n')).toMatch(/format qcow2: converted here, no registry gave its file: .*signed by key [0-9a-f]+, which is not in the trusted list/)
    expect(arts[0].sha256).not.toBe(await sha256File(fake))
    expect(arts[0].sha256).toBe(await sha256File(arts[0].path))

    // alice's own entry, its layer's bytes then changed in the registry's storage
    const epoch2 = 1700000002
    const key2 = formatKey('qcow2', disk.sha256, epoch2)
    const good = join(dir, 'good.qcow2')
    writeFileSync(good, 'x'.repeat(100_000))
    const digest = await sha256File(good)
    await new RemoteStageCache(client(), {signer: alice, trusted: []}).pushFormat('format-qcow2', key2, {path: good, sha256: digest}, {format: 'qcow2'})
    const data = join(reg.dir, 'storage', 'docker', 'registry', 'v2', 'blobs', 'sha256', digest.slice(0, 2), digest, 'data')
    writeFileSync(data, 'y'.repeat(100_000))
    const dest = join(dir, 'pulled')
    await mkdir(dest)
    const r = await new RemoteStageCache(client(), {trusted: [alice.publicKey]}).pullFormat('format-qcow2', key2, join(dest, 'disk.qcow2'))
    expect('reason' in r && r.reason).toMatch(/its bytes hash to sha256:[0-9a-f]{64}, not the digest asked for: refused/)
    expect(readdirSync(dest)).toEqual([])
  }, 300_000)

  it('never replaces a staged file: a pull that finds one placed meanwhile keeps it and says so; a side sha256 left by a removed file is not taken for the next', async () => {
    const epoch = 1700000004
    const key = formatKey('qcow2', disk.sha256, epoch)
    const file = join(dir, 'alice.qcow2')
    writeFileSync(file, 'q'.repeat(50_000))
    await new RemoteStageCache(client(), {signer: alice, trusted: []}).pushFormat('format-qcow2', key, {path: file, sha256: await sha256File(file)}, {format: 'qcow2'})
    // another publish of the same disk converted it here first
    const stage = join(dir, 'race')
    await mkdir(stage)
    const dest = join(stage, 'disk.qcow2')
    writeFileSync(dest, 'converted here')
    const r = await new RemoteStageCache(client(), {trusted: [alice.publicKey]}).pullFormat('format-qcow2', key, dest)
    expect(r).toEqual({sha256: await sha256File(file), placed: false})
    expect(readFileSync(dest, 'utf8')).toBe('converted here')
    expect(readdirSync(stage)).toEqual(['disk.qcow2'])

    // a staged qcow2 removed by hand, its side sha256 left behind (and wrong for what comes next)
    const stagingDir = join(dir, 'runner-e')
    const opts = {stagingDir, sha256MemoDir: join(stagingDir, 'memo'), sourceDateEpoch: epoch, gceName: 'x'}
    const [first] = await prepareFormats(disk, ['qcow2'], opts)
    await rm(first.path)
    writeFileSync(`${first.path}.sha256`, `${'0'.repeat(64)}\n`)
    const [again] = await prepareFormats(disk, ['qcow2'], opts)
    expect(again.sha256).toBe(await sha256File(again.path))
  }, 300_000)

  it('the next publish removes temp files a killed one left in the staging directory after an hour, and leaves younger ones (a publish still at work)', async () => {
    const stage = join(dir, 'stale')
    await mkdir(stage)
    const names = ['.disk.qcow2.tmp-456-0a1b2c', '.disk.qcow2.tmp-123-abcd', '.gce-XYZ', 'disk.qcow2']
    for (const n of names) writeFileSync(join(stage, n), 'x')
    const old = (Date.now() - 2 * 3_600_000) / 1000
    for (const n of names) utimesSync(join(stage, n), old, old)
    writeFileSync(join(stage, '.disk.raw.tmp-789-young'), 'y')
    await sweepStaleTemps(stage)
    expect(readdirSync(stage).sort()).toEqual(['.disk.raw.tmp-789-young', 'disk.qcow2'])
  })

  it('a registry that is down costs one warning: the formats are converted here, nothing is pushed, and the publish goes on', async () => {
    const deadHost = '127.0.0.1:9' // discard: nothing listens
    const dead = new RemoteStageCache(client(deadHost), {signer: alice, trusted: [alice.publicKey]})
    const stagingDir = join(dir, 'runner-d')
    const warnings: string[] = []
    const share = registryFormatShare({readers: [dead], pusher: dead}, (l) => warnings.push(l))!
    const arts = await prepareFormats(disk, ['qcow2', 'gce'], {stagingDir, sha256MemoDir: join(stagingDir, 'memo'), sourceDateEpoch: 1700000003, gceName: 'x', share})
    expect(arts.map((a) => existsSync(a.path))).toEqual([true, true])
    // the first pull finds it down; the rest of the publish asks it nothing more
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatch(/^format qcow2: converted here, no registry gave its file: /)
  }, 300_000)
})
