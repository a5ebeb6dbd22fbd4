import {existsSync, writeFileSync} from 'node:fs'
import {mkdtemp, readdir, readFile, rm, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it, vi} from 'vitest'

import {ConflictError} from '../src/errors.js'
import type {BuildRecord} from '../src/pipeline/build-record.js'
import {publish, type PublishOptions} from '../src/publish/index.js'
import {releaseMeasurements} from '../src/publish/publish.js'
import type {Manifest} from '../src/publish/manifest.js'
import type {ProvenanceStatement} from '../src/publish/provenance.js'
import {run} from '../src/util/exec.js'
import {sha256File} from '../src/util/fsx.js'
import {OVMF_CODE} from '../src/validate/host-probe.js'
import {OVMF_SNP_BIOS} from '../src/validate/ovmf-files.js'
import {makeBuildRecordFixture} from './helpers/build-record-fixture.js'
import {publishAndKill} from './helpers/publish-run.js'
import {startSshd, type TestSshd} from './helpers/sshd.js'

/** PCR 11 as Debian 12's systemd-measure calculates it from the sections of the disk's UKI (objcopy), apart from cvm-image's code */
async function systemdMeasurePcr11(disk: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'cvm-publish-pcr-'))
  try {
    const esp = 2048 * 512 // the fixture's ESP
    await run('mcopy', ['-n', '-i', `${disk}@@${esp}`, '::/EFI/BOOT/BOOTX64.EFI', join(d, 'uki.efi')], {env: {MTOOLS_SKIP_CHECK: '1'}})
    const files = []
    for (const s of ['linux', 'osrel', 'cmdline']) {
      await run('objcopy', ['-O', 'binary', `--only-section=.${s}`, join(d, 'uki.efi'), join(d, s)])
      files.push(`--${s}=${join(d, s)}`)
    }
    const r = await run('/usr/lib/systemd/systemd-measure', ['calculate', ...files, '--bank=sha256', '--phase=:'])
    return /^11:sha256=([0-9a-f]{64})$/m.exec(r.stdout)![1]
  } finally {
    await rm(d, {recursive: true, force: true})
  }
}

// each test hashes and copies GiB-sized disks: on a loaded 2-core machine that takes more than the default minute
vi.setConfig({testTimeout: 240_000})

let work: string
let sshd: TestSshd
let cacheDir: string
let stagingDir: string
let passed: {record: BuildRecord; path: string}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'cvm-publish-'))
  cacheDir = join(work, 'cache')
  stagingDir = join(work, 'staging')
  sshd = await startSshd()
  passed = await makeBuildRecordFixture(cacheDir, {recipeId: 'debian-12-test', seed: 'one'})
})

afterAll(async () => {
  await sshd?.stop()
  if (work) await rm(work, {recursive: true, force: true})
})

/** The two kinds of target, each backed by a local directory the test can inspect. */
const targets = [
  {kind: 'dir', spec: () => `dir:${join(work, 'dir-target')}`, root: () => join(work, 'dir-target'), ssh: () => ({}), killAfter: 256 * 1024 ** 2, throttleMs: 4},
  {
    kind: 'sftp',
    spec: () => `sftp://${sshd.user}@127.0.0.1:${sshd.port}${join(work, 'sftp-target')}`,
    root: () => join(work, 'sftp-target'),
    ssh: () => ({hostKey: sshd.hostKeyFingerprint, privateKey: sshd.userKeyPath}),
    killAfter: 256 * 1024 ** 2,
    throttleMs: 1,
  },
] as const

async function tree(dir: string): Promise<Record<string, {sha256: string; mtimeMs: number}>> {
  const out: Record<string, {sha256: string; mtimeMs: number}> = {}
  if (!existsSync(dir)) return out
  for (const name of (await readdir(dir)).sort()) out[name] = {sha256: await sha256File(join(dir, name)), mtimeMs: (await stat(join(dir, name))).mtimeMs}
  return out
}

describe.each(targets)('publish to a $kind target', (t) => {
  const opts = (): PublishOptions => ({stagingDir, ssh: t.ssh()})
  const releaseDir = (r: BuildRecord, version: string) => join(t.root(), r.recipeId, version)

  it('publishes every format, a SHA256SUMS that checks, a manifest and SLSA provenance', async () => {
    const r = await publish(passed.record, t.spec(), opts())
    expect(r.version).toBe(`1700000000-${passed.record.stages.assemble!.key.slice(0, 12)}`)
    expect(r.files.map((f) => [f.name, f.action])).toEqual([
      ['disk.raw', 'uploaded'],
      ['disk.qcow2', 'uploaded'],
      [`debian-12-test-${r.version}.tar.gz`, 'uploaded'],
      ['provenance.intoto.json', 'uploaded'],
      ['SHA256SUMS', 'uploaded'],
      ['manifest.json', 'uploaded'],
    ])
    expect(r.unchanged).toBe(false)
    const dir = releaseDir(passed.record, r.version)
    expect((await readdir(dir)).sort()).toEqual(r.files.map((f) => f.name).sort()) // no temp files left
    expect(await sha256File(join(dir, 'disk.raw'))).toBe((passed.record.stages.assemble!.meta as {diskSha256: string}).diskSha256)
    await run('sha256sum', ['--strict', '-c', 'SHA256SUMS'], {cwd: dir})
    // the published raw disk keeps its holes
    expect((await stat(join(dir, 'disk.raw'))).blocks * 512).toBeLessThan(64 * 1024 ** 2)

    const m = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest
    expect(m.recipe).toEqual({id: 'debian-12-test', name: 'Debian 12 (publish fixture)', digest: passed.record.recipeDigest})
    expect(m.kernel.version).toBe('6.1.192')
    expect(m.kernel.patches.map((p) => p.id ?? p.file)).toEqual(['3d2d861eb03e8ee96dc430a54361c900cbe28afd', '6.1/patches/0001-local.patch'])
    expect(m.boot.cmdline).toMatch(/^console=ttyS0 root=PARTUUID=/)
    expect(m.validation).toMatchObject({status: 'passed', allowedUnvalidated: false, modes: ['emulated'], hostKind: 'local', when: '2026-11-26T08:00:00.000Z'})
    expect(m.gce.guestOsFeatures.map((g) => g.type)).toEqual(['UEFI_COMPATIBLE', 'SEV_CAPABLE', 'GVNIC'])
    expect(m.sourceDateEpoch).toBe(1700000000)
    expect(m.provenance.sha256).toBe(await sha256File(join(dir, 'provenance.intoto.json')))
    for (const a of m.artifacts) expect(await sha256File(join(dir, a.name))).toBe(a.sha256)
    // the expected measurements: the UKI's PCRs (unsigned: PCR 4 and 7 with Secure Boot off only), the validation firmware's launch digests
    expect(m.measurements.entries.map((e) => `${e.kind}${e.params.phase ? ` ${e.params.phase}` : ''}${e.params.vmsaForm ? ` ${e.params.vmsaForm}` : ''}`)).toEqual([
      'tpm-pcr11 stub',
      'tpm-pcr11 sysinit:ready',
      'tpm-pcr4',
      'tpm-pcr7',
      'sev-launch',
      'sev-es-launch legacy',
      'sev-es-launch legacy-debug-swap',
      'sev-es-launch init2',
    ])
    expect(m.measurements.entries.find((e) => e.kind === 'tpm-pcr11')!.value).toBe(await systemdMeasurePcr11(join(dir, 'disk.raw')))
    for (const e of m.measurements.entries.filter((x) => x.kind.startsWith('sev'))) expect(e.params).toMatchObject({firmware: OVMF_CODE, firmwareSha256: await sha256File(OVMF_CODE)})
    expect(m.measurements.entries.find((e) => e.kind === 'sev-es-launch')!.params.vcpus).toBe(passed.record.recipe.validate.cpus)
    expect(m.measurements.notes.join(' ')).toMatch(/binds the firmware .*not the disk/)
    // the fixture's validation has no tpm-pcrs check: nothing is proven on a vTPM
    for (const e of m.measurements.entries) expect(e.proof, e.kind).toMatchObject({status: 'predicted-only', why: expect.any(String)})

    const p = JSON.parse(await readFile(join(dir, 'provenance.intoto.json'), 'utf8')) as ProvenanceStatement
    expect(p._type).toBe('https://in-toto.io/Statement/v1')
    expect(p.predicateType).toBe('https://slsa.dev/provenance/v1')
    expect(p.subject).toEqual(m.artifacts.map((a) => ({name: a.name, digest: {sha256: a.sha256}})))
    const deps = p.predicate.buildDefinition.resolvedDependencies
    expect(deps[0]).toEqual({name: 'recipe:debian-12-test', digest: {sha256: passed.record.recipeDigest}})
    expect(deps.find((d) => d.name.startsWith('patch:3d2d861eb03e'))?.digest.gitCommit).toBe('3d2d861eb03e8ee96dc430a54361c900cbe28afd')
  })

  it('a second identical publish uploads nothing and touches nothing', async () => {
    const version = `1700000000-${passed.record.stages.assemble!.key.slice(0, 12)}`
    const before = await tree(releaseDir(passed.record, version))
    // a later build that took every stage from the cache: same stages, another finish time
    const rebuilt = {...passed.record, finishedAt: new Date(Date.parse(passed.record.finishedAt) + 3600_000).toISOString()}
    const r = await publish(rebuilt, t.spec(), opts())
    expect(r.unchanged).toBe(true)
    expect(r.bytesUploaded).toBe(0)
    expect(r.files.every((f) => f.action === 'present')).toBe(true)
    expect(await tree(releaseDir(passed.record, version))).toEqual(before)
  })

  it('refuses different bytes under an existing version and leaves the release as it was', async () => {
    const cache = join(work, `cache-conflict-${t.kind}`)
    const first = await makeBuildRecordFixture(cache, {recipeId: 'pinned', seed: 'a', version: '1.0', formats: ['raw']})
    await publish(first.record, t.spec(), opts())
    const before = await tree(releaseDir(first.record, '1.0'))
    const other = await makeBuildRecordFixture(join(cache, 'other'), {recipeId: 'pinned', seed: 'b', version: '1.0', formats: ['raw']})
    const err = await publish(other.record, t.spec(), opts()).catch((e) => e)
    expect(err).toBeInstanceOf(ConflictError)
    expect(err.exitCode).toBe(4)
    expect(err.details.join('\n')).toMatch(/disk\.raw: sha256 [0-9a-f]{64} at the target, [0-9a-f]{64} here/)
    expect(await tree(releaseDir(first.record, '1.0'))).toEqual(before)
    await rm(cache, {recursive: true, force: true})
  })

  it('a publish killed mid-upload shows no partial file under a final name, and a re-run completes it', async () => {
    const cache = join(work, `cache-kill-${t.kind}`)
    const fx = await makeBuildRecordFixture(cache, {recipeId: 'killed', seed: 'kill', formats: ['qcow2', 'raw', 'gce']})
    const version = `1700000000-${fx.record.stages.assemble!.key.slice(0, 12)}`
    const dir = releaseDir(fx.record, version)
    const killed = await publishAndKill({recordPath: fx.path, target: t.spec(), throttleMs: t.throttleMs, options: opts()}, (e) => e.file === 'disk.raw' && e.done >= t.killAfter)
    expect(killed.signal).toBe('SIGKILL')
    expect(killed.events.some((e) => e.file === 'disk.raw' && e.done < e.total)).toBe(true)

    const between = await readdir(dir)
    expect(between).toContain('disk.qcow2') // the first artifact was finished and renamed
    expect(between).not.toContain('disk.raw')
    expect(between).not.toContain('manifest.json')
    expect(between).not.toContain('SHA256SUMS')
    const partial = between.find((n) => /^\.disk\.raw\.[0-9a-f]{12}\.partial$/.test(n))
    expect(partial).toBeDefined()
    const partialSize = (await stat(join(dir, partial!))).size
    expect(partialSize).toBeGreaterThan(0)
    expect(partialSize).toBeLessThan(1024 ** 3)
    const qcowBetween = await sha256File(join(dir, 'disk.qcow2'))

    const r = await publish(fx.record, t.spec(), opts())
    expect(Object.fromEntries(r.files.map((f) => [f.name, f.action]))).toMatchObject({'disk.qcow2': 'present', 'disk.raw': 'resumed', 'manifest.json': 'uploaded'})
    expect(r.files.find((f) => f.name === 'disk.qcow2')!.sha256).toBe(qcowBetween)
    expect((await readdir(dir)).filter((n) => n.startsWith('.'))).toEqual([])
    for (const f of r.files) expect(await sha256File(join(dir, f.name)), f.name).toBe(f.sha256)
    await rm(cache, {recursive: true, force: true})
  })

  it('never replaces a file that another publisher put under a final name meanwhile', async () => {
    const cache = join(work, `cache-race-${t.kind}`)
    const fx = await makeBuildRecordFixture(cache, {recipeId: 'raced', seed: 'race', formats: ['qcow2']})
    const dir = releaseDir(fx.record, `1700000000-${fx.record.stages.assemble!.key.slice(0, 12)}`)
    let intruded = false
    const err = await publish(fx.record, t.spec(), {
      ...opts(),
      onProgress: () => {
        if (intruded) return
        intruded = true
        writeFileSync(join(dir, 'disk.qcow2'), 'another build\n') // a second publisher wins the race for this name
      },
    }).catch((e) => e)
    expect(intruded).toBe(true)
    expect(err).toBeInstanceOf(ConflictError)
    expect(err.message).toMatch(/another publisher put a different disk\.qcow2/)
    expect(await readFile(join(dir, 'disk.qcow2'), 'utf8')).toBe('another build\n')
    expect(await readdir(dir)).toEqual(['disk.qcow2']) // no manifest, no temp file left behind
    await rm(cache, {recursive: true, force: true})
  })

  it('refuses an image whose validation failed or did not run, unless --allow-unvalidated (then the manifest says so)', async () => {
    const cache = join(work, `cache-unvalidated-${t.kind}`)
    for (const validation of ['missing', 'failed', 'skipped'] as const) {
      const fx = await makeBuildRecordFixture(cache, {recipeId: `unvalidated-${validation}`, seed: validation, validation, formats: ['qcow2']})
      const err = await publish(fx.record, t.spec(), opts()).catch((e) => e)
      expect(err).toBeInstanceOf(ConflictError)
      expect(err.message).toMatch(validation === 'failed' ? /validation failed \(1 check failed\)/ : /was not validated/)
      expect(err.hint).toContain('--allow-unvalidated')
      expect(existsSync(join(t.root(), `unvalidated-${validation}`))).toBe(false)
    }
    // a control build is never published, whatever its validation and --allow-unvalidated
    const control = await makeBuildRecordFixture(cache, {recipeId: 'control', seed: 'control', validation: 'passed', control: true, formats: ['qcow2']})
    const refused = await publish(control.record, t.spec(), {...opts(), allowUnvalidated: true}).catch((e) => e)
    expect(refused).toBeInstanceOf(ConflictError)
    expect(refused.message).toMatch(/^refusing to publish control: it is a control build/)
    expect(existsSync(join(t.root(), 'control'))).toBe(false)
    const fx = await makeBuildRecordFixture(cache, {recipeId: 'unvalidated-allowed', seed: 'missing', validation: 'missing', formats: ['qcow2']})
    const r = await publish(fx.record, t.spec(), {...opts(), allowUnvalidated: true})
    const m = JSON.parse(await readFile(join(releaseDir(fx.record, r.version), 'manifest.json'), 'utf8')) as Manifest
    expect(m.validation).toMatchObject({status: 'not-run', allowedUnvalidated: true})
    await rm(cache, {recursive: true, force: true})
  })
})

describe('sftp target refusals', () => {
  it('refuses a host key that is not the pinned one before uploading anything', async () => {
    const wrong = 'SHA256:' + 'A'.repeat(43)
    const err = await publish(passed.record, `sftp://${sshd.user}@127.0.0.1:${sshd.port}${join(work, 'never')}`, {stagingDir, ssh: {hostKey: wrong, privateKey: sshd.userKeyPath}}).catch((e) => e)
    expect(err.message).toContain(`is ${sshd.hostKeyFingerprint}, not the pinned ${wrong}`)
    expect(existsSync(join(work, 'never'))).toBe(false)
  })
})

describe('publish to an SFTP-only account (no commands: digests are read back)', () => {
  let sftpOnly: TestSshd
  beforeAll(async () => {
    sftpOnly = await startSshd({sftpOnly: true})
  })
  afterAll(async () => {
    await sftpOnly?.stop()
  })

  it('verifies by reading back, and a re-run is a no-op', async () => {
    const dest = join(work, 'sftp-only')
    const spec = `sftp://${sftpOnly.user}@127.0.0.1:${sftpOnly.port}${dest}`
    const ssh = {knownHostsFile: sftpOnly.knownHostsFile, privateKey: sftpOnly.userKeyPath}
    const r = await publish(passed.record, spec, {stagingDir, ssh, formats: ['qcow2', 'gce']})
    expect(r.files.map((f) => f.action)).toEqual(['uploaded', 'uploaded', 'uploaded', 'uploaded', 'uploaded'])
    const dir = join(dest, passed.record.recipeId, r.version)
    for (const f of r.files) expect(await sha256File(join(dir, f.name)), f.name).toBe(f.sha256)
    const again = await publish(passed.record, spec, {stagingDir, ssh, formats: ['qcow2', 'gce']})
    expect(again.unchanged).toBe(true)
    expect(again.bytesUploaded).toBe(0)
  })
})

describe("the manifest's SEV-SNP launch digests follow the recorded kernel check", () => {
  const snpReady = (status: 'supported' | 'needs-config') => ({
    version: '6.12.117',
    features: [
      {feature: 'sev-snp', status: 'supported' as const, reason: 'snp_init in the SEV guest code'},
      {feature: 'sev-guest', status, reason: status === 'supported' ? 'CONFIG_SEV_GUEST=m' : 'CONFIG_SEV_GUEST is not set'},
    ],
  })
  const withSupport = (support: ReturnType<typeof snpReady> | undefined): BuildRecord => {
    const r = structuredClone(passed.record)
    const compile = r.stages.compile!
    compile.meta = {...compile.meta, support}
    return r
  }
  const disk = () => join(passed.record.stages.assemble!.dir, 'disk.raw')

  it('a kernel that can be an SNP guest gets the SNP digest of the -bios OVMF; one without sev-guest, or with no recorded check, gets none and a note that says why', async () => {
    const yes = await releaseMeasurements(withSupport(snpReady('supported')), disk())
    const snp = yes.entries.filter((e) => e.kind === 'snp-launch')
    expect(snp).toHaveLength(1)
    expect(snp[0].params).toMatchObject({firmware: OVMF_SNP_BIOS, vcpus: passed.record.recipe.validate.cpus})
    expect(snp[0].value).toMatch(/^[0-9a-f]{96}$/)
    expect(yes.notes.join(' ')).not.toMatch(/no SEV-SNP launch digests/)
    for (const support of [snpReady('needs-config'), undefined]) {
      const no = await releaseMeasurements(withSupport(support), disk())
      expect(no.entries.filter((e) => e.kind === 'snp-launch')).toEqual([])
      expect(no.entries.some((e) => e.kind === 'sev-es-launch')).toBe(true)
      expect(no.notes.join(' ')).toMatch(/no SEV-SNP launch digests: the kernel cannot be an SEV-SNP guest/)
    }
  })
})
