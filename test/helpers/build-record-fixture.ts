import {randomBytes} from 'node:crypto'
import {existsSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {link, mkdir, mkdtemp, readFile, rename, rm, writeFile} from 'node:fs/promises'
import {dirname, join} from 'node:path'

import {writeBuildRecord, type BuildRecord} from '../../src/pipeline/build-record.js'
import type {StageName, StageResult, StageResults} from '../../src/pipeline/stage.js'
import {Recipe} from '../../src/recipe/schema.js'
import {sha256} from '../../src/util/fsx.js'
import type {PatchRecord} from '../../src/kernel/series-apply.js'
import type {StageResultTypes, UkiSigning, ValidateCheck} from '../../src/pipeline/results.js'
import {EFI_STUB, buildUki} from '../../src/disk/uki.js'
import {makeGptDisk, pseudoRandom} from './disk-fixture.js'

export interface FixtureOptions {
  recipeId?: string
  /** different seeds give different disk bytes */
  seed?: string
  /** passed (default), failed, skipped, or missing (no validate stage) */
  validation?: 'passed' | 'failed' | 'skipped' | 'missing'
  /** the assemble stage's Secure Boot record (default unsigned) */
  secureBoot?: UkiSigning
  /** a control build (--control): its patch stage applied only the build fixes */
  control?: boolean
  /** recipe.publish.version */
  version?: string
  formats?: ('raw' | 'qcow2' | 'gce')[]
  features?: string[]
  /** lines of the kernel .config */
  config?: string[]
  /** a passed emulated marker check whose evidence is this dmesg line */
  marker?: string
}

/** master copies of the disks made in this process, by seed: a hard link gives the same bytes without writing and hashing 1 GiB again */
const disks = new Map<string, {path: string; sha256: string}>()
// one folder per loading of this module: test files running in threads of one process each load it, and
// two of them making the same seed's disk at one path would rewrite a file the other has linked and reads
const masters = join(tmpdir(), `cvm-fixture-disks-${process.pid}-${randomBytes(4).toString('hex')}`)
process.once('exit', () => rmSync(masters, {recursive: true, force: true}))

/**
 * A small real UKI for a seed (systemd's stub standing in for the kernel; the seed in its command
 * line), so that what reads the disk's UKI (publish's measurements) has one to read.
 */
async function ukiFor(seed: string): Promise<string> {
  await mkdir(masters, {recursive: true})
  const base = join(masters, `uki-${sha256(seed).slice(0, 16)}`)
  if (existsSync(`${base}.efi`)) return `${base}.efi`
  // files of its own: test files in other threads of this process may make the same UKI at once
  const tmp = await mkdtemp(`${base}-`)
  await writeFile(join(tmp, 'cmdline'), `console=ttyS0 root=PARTUUID=0f7a4c3e-1111-4e0c-9d7a-3b2f6c1d2e3f ro fixture=${seed}`)
  await writeFile(join(tmp, 'osrel'), 'ID=debian\nVERSION_ID="12"\n')
  await buildUki({vmlinuz: EFI_STUB, cmdlineFile: join(tmp, 'cmdline'), osReleaseFile: join(tmp, 'osrel')}, join(tmp, 'uki.efi'), {sourceDateEpoch: 1_700_000_000})
  await rename(join(tmp, 'uki.efi'), `${base}.efi`)
  await rm(tmp, {recursive: true, force: true})
  return `${base}.efi`
}

async function diskFor(seed: string, path: string): Promise<{sha256: string}> {
  const uki = await ukiFor(seed)
  let made = disks.get(seed)
  if (!made) {
    made = await makeGptDisk(join(masters, `${sha256(seed).slice(0, 16)}.raw`), 1, `disk:${seed}`, {uki})
    disks.set(seed, made)
  }
  try {
    await link(made.path, path)
    return made
  } catch {
    return makeGptDisk(path, 1, `disk:${seed}`, {uki}) // another file system: make it there
  }
}

const CONFIG = ['CONFIG_X86_64=y', 'CONFIG_AMD_MEM_ENCRYPT=y', 'CONFIG_EFI_STUB=y', 'CONFIG_BLK_DEV_NVME=y', 'CONFIG_SWIOTLB=y', 'CONFIG_GVE=m', '# CONFIG_SCSI_VIRTIO is not set']

/**
 * A build record over real files in a cache dir: a 1 GiB sparse GPT disk.raw whose ESP holds a small real UKI,
 * a kernel .config, patch and base metadata with real sha256s. No other stage needs to have run.
 */
export async function makeBuildRecordFixture(cacheDir: string, o: FixtureOptions = {}): Promise<{record: BuildRecord; path: string}> {
  const recipeId = o.recipeId ?? 'debian-12-test'
  const seed = o.seed ?? 'one'
  const recipe = Recipe.parse({
    id: recipeId,
    name: 'Debian 12 (publish fixture)',
    status: 'buildable-here',
    distro: {family: 'debian', release: '12', kernel: '6.1'},
    source_date_epoch: 1700000000,
    base: {kind: 'mmdebstrap', suite: 'bookworm', mirror: 'http://deb.debian.org/debian'},
    kernel: {
      line: '6.1',
      upstream_version: '6.1',
      source: {kind: 'debian-package', package: 'linux-source-6.1', suite: 'bookworm', mirror: 'http://deb.debian.org/debian'},
      config: {base: 'lean', features: o.features ?? ['sev', 'sev-es', 'nvme-swiotlb']},
      sev_es: 'in 6.1',
    },
    image: {size_gib: 1, formats: o.formats ?? ['raw', 'qcow2', 'gce'], kernel_hold: {method: 'apt-preferences', packages: ['linux-image-*']}},
    publish: o.version ? {version: o.version} : {},
  })
  const key = (stage: string) => sha256(`${recipeId}:${seed}:${stage}`)
  const stages: StageResults = {}
  const put = async <K extends StageName>(stage: K, meta: StageResultTypes[K], files: Record<string, Buffer | string> = {}) => {
    const dir = join(cacheDir, 'stages', stage, key(stage))
    await mkdir(dir, {recursive: true})
    for (const [name, data] of Object.entries(files)) {
      await mkdir(dirname(join(dir, name)), {recursive: true})
      await writeFile(join(dir, name), data)
    }
    await writeFile(join(dir, 'result.json'), JSON.stringify(meta, null, 2))
    ;(stages as Partial<Record<K, StageResult<K>>>)[stage] = {stage, key: key(stage), dir, meta}
    return dir
  }

  const rootfs = pseudoRandom(`rootfs:${seed}`, 10_240)
  await put('base', {source: 'mmdebstrap bookworm minbase', sha256: sha256(rootfs), entries: 1}, {'rootfs.tar': rootfs})
  const tarball = pseudoRandom('linux-source-6.1', 4096)
  await put('kernel-source', {kind: 'debian-package', version: '6.1.192', digest: sha256(tarball), package: 'linux-source-6.1'})
  const localPatch = Buffer.from('--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n')
  const applied: PatchRecord[] = [
    {series: '6.1', kind: 'upstream', id: '3d2d861eb03e8ee96dc430a54361c900cbe28afd', subject: 'nvme-pci: set min_align_mask', backports: [], fixes: [], sha256: sha256('3d2d861eb03e patch text'), action: 'applied', reason: 'not in the tree'},
    {series: '6.1', kind: 'local', file: '6.1/patches/0001-local.patch', subject: 'local fix', backports: [], fixes: [], sha256: sha256(localPatch), action: 'applied', reason: 'not in the tree'},
  ]
  await put('patch', {control: o.control ?? false, applied, skipped: [], withheld: []})
  const config = (o.config ?? CONFIG).join('\n') + '\n'
  await put('configure', {base: 'lean', features: recipe.kernel.config.features, digest: sha256(config), verified: ['CONFIG_AMD_MEM_ENCRYPT']}, {config})
  await put('compile', {release: '6.1.192-cvm', version: '6.1.192', sourceDigest: sha256(tarball), patches: applied, configDigest: sha256(config), vmlinuzSha256: sha256('vmlinuz')}, {config, ...(config.includes('CONFIG_GVE=m') ? {'modules/lib/modules/6.1.192-cvm/kernel/drivers/net/ethernet/google/gve/gve.ko': 'gve'} : {})})

  const assembleDir = join(cacheDir, 'stages', 'assemble', key('assemble'))
  await mkdir(assembleDir, {recursive: true})
  const disk = await diskFor(seed, join(assembleDir, 'disk.raw'))
  const uki = await readFile(await ukiFor(seed))
  await put('assemble', {
    diskSha256: disk.sha256,
    ukiSha256: sha256(uki),
    cmdline: 'console=ttyS0 root=PARTUUID=0f7a4c3e-1111-4e0c-9d7a-3b2f6c1d2e3f ro',
    rootPartUuid: '0f7a4c3e-1111-4e0c-9d7a-3b2f6c1d2e3f',
    espPartUuid: '0f7a4c3e-2222-4e0c-9d7a-3b2f6c1d2e3f',
    diskGuid: '0f7a4c3e-3333-4e0c-9d7a-3b2f6c1d2e3f',
    rootFsUuid: '0f7a4c3e-4444-4e0c-9d7a-3b2f6c1d2e3f',
    sizeGiB: 1,
    kernelRelease: '6.1.192-cvm',
    rootfs: {entries: 1, removed: 0, added: 0, xattrs: 0},
    secureBoot: o.secureBoot ?? {status: 'unsigned'},
  }, {'uki.efi': uki})

  const v = o.validation ?? 'passed'
  if (v !== 'missing') {
    const verdict = v === 'skipped' ? 'skip' : 'pass'
    const checks: ValidateCheck[] = [
      {mode: 'emulated', name: 'booted-kernel', verdict, evidence: 'Linux version 6.1.192-cvm'},
      {mode: 'emulated', name: 'nvme-bounce-integrity', verdict: v === 'failed' ? 'fail' : verdict, evidence: 'sha256 mismatch at offset 4097'},
      {mode: 'sev', name: 'memory-encryption', verdict: 'skip', evidence: 'host has no SEV'},
      ...(o.marker ? [{mode: 'emulated', name: 'marker', verdict, evidence: o.marker} satisfies ValidateCheck] : []),
    ]
    await put('validate', {verdict: v, modes: ['emulated'], checks, when: '2026-11-26T08:00:00.000Z', hostKind: 'local'}, {'report.json': '{}'})
  }

  const record: BuildRecord = {
    recipeId,
    recipeDigest: sha256(`recipe:${recipeId}:${o.version ?? ''}`),
    recipe,
    toolVersion: '0.1.0',
    sourceDateEpoch: recipe.source_date_epoch,
    finishedAt: '2026-11-26T08:01:00.000Z',
    stages,
  }
  const path = await writeBuildRecord(cacheDir, record)
  return {record, path}
}
