import {existsSync} from 'node:fs'
import {mkdtemp, open, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it, vi} from 'vitest'

import {ConflictError} from '../src/errors.js'
import type {BuildRecord} from '../src/pipeline/build-record.js'
import {publish, verifyRelease, type PublishOptions, type VerifyResult} from '../src/publish/index.js'
import {sha256File} from '../src/util/fsx.js'
import {makeBuildRecordFixture} from './helpers/build-record-fixture.js'
import {cli} from './helpers/cli.js'
import {repoRoot} from './helpers/paths.js'
import {startSshd, type TestSshd} from './helpers/sshd.js'

/**
 * A published release is checked by sha256 where it lies: a re-publish finds a flipped byte and puts
 * its own release back, and `cvm-image verify` tells a pipeline whether a release is intact.
 */

// each test hashes GiB-sized sparse disks: on a loaded 2-core machine that takes more than the default minute
vi.setConfig({testTimeout: 240_000})

let work: string
let sshd: TestSshd
let stagingDir: string

beforeAll(async () => {
  if (!existsSync(join(repoRoot, 'dist', 'commands', 'verify.js'))) throw new Error('dist/ is not built: run scripts/test (or npx tsc -p .) first')
  work = await mkdtemp(join(tmpdir(), 'cvm-verify-'))
  stagingDir = join(work, 'staging')
  sshd = await startSshd()
})

afterAll(async () => {
  await sshd?.stop()
  if (work) await rm(work, {recursive: true, force: true})
})

/** flips one byte of a file in place (its size stays the same) */
async function flipByte(path: string, at: number): Promise<void> {
  const fh = await open(path, 'r+')
  try {
    const b = Buffer.alloc(1)
    await fh.read(b, 0, 1, at)
    b[0] ^= 0xff
    await fh.write(b, 0, 1, at)
  } finally {
    await fh.close()
  }
}

const targets = [
  {kind: 'dir', spec: () => `dir:${join(work, 'dir-target')}`, root: () => join(work, 'dir-target'), ssh: () => ({}), flags: () => [] as string[]},
  {
    kind: 'sftp',
    spec: () => `sftp://${sshd.user}@127.0.0.1:${sshd.port}${join(work, 'sftp-target')}`,
    root: () => join(work, 'sftp-target'),
    ssh: () => ({hostKey: sshd.hostKeyFingerprint, privateKey: sshd.userKeyPath}),
    flags: () => ['--publish-host-key', sshd.hostKeyFingerprint, '--publish-identity', sshd.userKeyPath],
  },
] as const

describe.each(targets)('a published release on a $kind target', (t) => {
  const opts = (): PublishOptions => ({stagingDir, ssh: t.ssh()})
  let record: BuildRecord
  let version: string
  const releaseDir = () => join(t.root(), record.recipeId, version)
  const releaseSpec = () => `${t.spec()}/${record.recipeId}/${version}`

  beforeAll(async () => {
    const fx = await makeBuildRecordFixture(join(work, `cache-${t.kind}`), {recipeId: `verified-${t.kind}`, seed: 'verify', formats: ['raw', 'qcow2']})
    record = fx.record
    version = (await publish(record, t.spec(), opts())).version
  })

  it('verify: an intact release exits 0 and lists every file ok (--json)', async () => {
    const r = await cli(['verify', releaseSpec(), ...t.flags(), '--json'])
    expect(r.code, r.stderr).toBe(0)
    const res = JSON.parse(r.stdout) as VerifyResult
    expect(res).toMatchObject({recipeId: record.recipeId, version, intact: true})
    expect(res.files.map((f) => [f.name, f.verdict])).toEqual([
      ['disk.raw', 'ok'],
      ['disk.qcow2', 'ok'],
      ['provenance.intoto.json', 'ok'],
      ['SHA256SUMS', 'ok'],
    ])
  })

  it('a byte flipped in the published disk.raw: verify exits 4 naming it, and a re-publish repairs it', async () => {
    const disk = join(releaseDir(), 'disk.raw')
    const good = await sha256File(disk)
    await flipByte(disk, 1024 * 1024 + 7)
    expect(await sha256File(disk)).not.toBe(good)

    const r = await cli(['verify', releaseSpec(), ...t.flags()])
    expect(r.code, r.stderr).toBe(4)
    expect(r.stderr).toMatch(/does not verify: disk\.raw differs from its manifest\.json/)
    expect(r.stderr).toMatch(new RegExp(`disk\\.raw: sha256 [0-9a-f]{64} at the target, the manifest says ${good}`))
    const j = await cli(['verify', releaseSpec(), ...t.flags(), '--json'])
    expect(j.code).toBe(4)
    expect(JSON.parse(j.stdout).error.details.join('\n')).toContain('disk.raw')
    await expect(verifyRelease(releaseSpec(), {ssh: t.ssh()})).rejects.toBeInstanceOf(ConflictError)

    const again = await publish(record, t.spec(), opts())
    expect(Object.fromEntries(again.files.map((f) => [f.name, f.action]))).toEqual({
      'disk.raw': 'repaired',
      'disk.qcow2': 'present',
      'provenance.intoto.json': 'present',
      SHA256SUMS: 'present',
      'manifest.json': 'present',
    })
    expect(again.unchanged).toBe(false)
    expect(await sha256File(disk)).toBe(good)
    expect((await verifyRelease(releaseSpec(), {ssh: t.ssh()})).intact).toBe(true)
  })

  it('a file that differs under a release this build did not publish is refused (exit 4), naming it', async () => {
    const fx = await makeBuildRecordFixture(join(work, `cache-other-${t.kind}`), {recipeId: `pinned-${t.kind}`, seed: 'verify-a', version: '1.0', formats: ['raw']})
    await publish(fx.record, t.spec(), opts())
    const dir = join(t.root(), fx.record.recipeId, '1.0')
    // the release was interrupted before its manifest, and its disk was damaged meanwhile
    await rm(join(dir, 'manifest.json'))
    await flipByte(join(dir, 'disk.raw'), 4096)
    const before = await sha256File(join(dir, 'disk.raw'))
    const err = await publish(fx.record, t.spec(), opts()).catch((e) => e)
    expect(err).toBeInstanceOf(ConflictError)
    expect(err.exitCode).toBe(4)
    expect(err.details.join('\n')).toMatch(/disk\.raw: sha256 [0-9a-f]{64} at the target, [0-9a-f]{64} here/)
    expect(await sha256File(join(dir, 'disk.raw'))).toBe(before)
    // and verify says the release is not complete
    const r = await cli(['verify', `${t.spec()}/${fx.record.recipeId}/1.0`, ...t.flags()])
    expect(r.code).toBe(4)
    expect(r.stderr).toMatch(/is not a complete release: it has no manifest\.json/)
    // a manifest.json that is not JSON, or JSON that is no manifest: refused (exit 4), not a crash (exit 70)
    for (const [text, why] of [
      ['{"artifacts": [', /not a cvm-image manifest \(.*JSON/],
      ['null', /not a cvm-image manifest \(it names no artifacts or provenance\)/],
      ['{"artifacts": [], "provenance": {}}', /not a cvm-image manifest \(it names no artifacts or provenance\)/],
    ] as const) {
      await writeFile(join(dir, 'manifest.json'), text)
      const bad = await cli(['verify', `${t.spec()}/${fx.record.recipeId}/1.0`, ...t.flags()])
      expect(bad.code, bad.stderr).toBe(4)
      expect(bad.stderr).toMatch(why)
      expect(bad.stderr).toContain('hint: the release was damaged or is not one cvm-image published')
    }
  })

  it('verify names a SHA256SUMS that disagrees with the manifest, and a missing file', async () => {
    const sums = join(releaseDir(), 'SHA256SUMS')
    const text = await readFile(sums, 'utf8')
    await writeFile(sums, text.replace(/^[0-9a-f]/m, (c) => (c === '0' ? '1' : '0')))
    await rm(join(releaseDir(), 'disk.qcow2'))
    const r = await cli(['verify', releaseSpec(), ...t.flags()])
    expect(r.code).toBe(4)
    expect(r.stderr).toContain('disk.qcow2: missing (the manifest says sha256')
    expect(r.stderr).toMatch(/SHA256SUMS: sha256 [0-9a-f]{64} at the target, the manifest says [0-9a-f]{64}/)
  })
})
