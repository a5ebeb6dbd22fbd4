import {createHash} from 'node:crypto'
import {rm, truncate, writeFile} from 'node:fs/promises'
import {copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {buildUki, EFI_STUB} from '../src/disk/uki.js'
import {run} from '../src/util/exec.js'

import type {MeasurementEntry} from '../src/measure/entry.js'
import {OVMF_VARS} from '../src/validate/host-probe.js'
import {cli} from './helpers/cli.js'
import {DEBIAN_OVMF, oracleFirmware} from './helpers/sev-oracle.js'
import {BOOKWORM_NO_SNP_METADATA, BOOKWORM_SNP_OVMF, bookwormFirmware} from './helpers/snp-oracle.js'
import {GUIDS, syntheticOvmf} from './helpers/synthetic-ovmf.js'

interface MeasureJson {
  subject: {kind: string; path?: string; recipeId?: string; disk?: string; diskSha256?: string}
  measurements: MeasurementEntry[]
  notes: string[]
}
interface ErrorJson {
  error: {message: string; details: string[]; hint: string; exitCode: number}
}

/** `cvm-image measure` through the built binary: the command needs the firmware, not a real image. */
describe('cvm-image measure (the built binary)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cvm-measure-cli-'))
  afterAll(() => rm(dir, {recursive: true, force: true}))
  const disk = join(dir, 'disk.raw')
  writeFileSync(disk, Buffer.alloc(64 * 1024))
  const fw = DEBIAN_OVMF[0] // /usr/share/OVMF/OVMF_CODE_4M.fd, the firmware validation boots
  // a firmware whose footer table has no SEV-ES reset block
  const noEs = join(dir, 'no-es.fd')
  const noEsBytes = syntheticOvmf({entries: [{guid: GUIDS.sevSecret, data: Buffer.alloc(8)}]})
  writeFileSync(noEs, noEsBytes)

  it('measure <disk.raw> --json with the validation firmware: the oracle\'s SEV and SEV-ES digests for the vCPU counts and types given, and says the disk is not in them', async (ctx) => {
    oracleFirmware(fw, (note) => ctx.skip(note))
    const r = await cli(['measure', disk, '--no-pcr', '--json', '--cpus', '1,4', '--cpu-type', 'EPYC-v4,EPYC-Milan', '--vmsa-form', 'legacy'])
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout) as MeasureJson
    expect(out.subject).toEqual({kind: 'disk', path: disk})
    const oracle = Object.fromEntries(fw.sevEs.filter(([form]) => form === 'legacy').map(([, cpu, vcpus, digest]) => [`${cpu} ${vcpus}`, digest]))
    expect(out.measurements.map((m) => [m.kind, m.kind === 'sev-es-launch' ? `${m.params.cpuType} ${m.params.vcpus}` : '', m.value])).toEqual([
      ['sev-launch', '', fw.sev],
      ['sev-es-launch', 'EPYC-v4 1', oracle['EPYC-v4 1']],
      ['sev-es-launch', 'EPYC-Milan 1', oracle['EPYC-Milan 1']],
      ['sev-es-launch', 'EPYC-v4 4', oracle['EPYC-v4 4']],
      ['sev-es-launch', 'EPYC-Milan 4', oracle['EPYC-Milan 4']],
    ])
    for (const m of out.measurements) expect(m.params).toMatchObject({firmware: fw.path, firmwareSha256: fw.sha256})
    expect(out.notes[0]).toMatch(/binds the firmware .*not the disk/)
  })

  it('measure <recipe id>: the build\'s disk and its recipe\'s validate.cpus as the vCPU count; every VMSA form by default, each named', async (ctx) => {
    oracleFirmware(fw, (note) => ctx.skip(note))
    const cache = join(dir, 'cache')
    mkdirSync(join(cache, 'builds'), {recursive: true})
    // what measure reads of a build record: the recipe's validate.cpus and the assemble stage's disk
    const record = {recipeId: 'toy', recipe: {validate: {cpus: 4}}, stages: {assemble: {stage: 'assemble', key: 'k', dir: join(cache, 'assemble'), meta: {diskSha256: 'ab'.repeat(32)}}}}
    writeFileSync(join(cache, 'builds', 'toy.json'), JSON.stringify(record))
    const r = await cli(['measure', 'toy', '--no-pcr', '--json', '--mode', 'sev-es'], {env: {CVM_IMAGE_CACHE: cache}})
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout) as MeasureJson
    expect(out.subject).toEqual({kind: 'build', recipeId: 'toy', disk: join(cache, 'assemble', 'disk.raw'), diskSha256: 'ab'.repeat(32)})
    const oracle = Object.fromEntries(fw.sevEs.filter(([, cpu, vcpus]) => cpu === 'EPYC-v4' && vcpus === 4).map(([form, , , digest]) => [form, digest]))
    expect(Object.fromEntries(out.measurements.map((m) => [m.params.vmsaForm, m.value]))).toEqual(oracle)
    expect(out.measurements.map((m) => m.params.vcpus)).toEqual([4, 4, 4])
  })

  it('a firmware with no SEV-ES reset block: exit 2 naming the file, and --mode sev alone still gives its digest (its sha256)', async () => {
    const r = await cli(['measure', disk, '--no-pcr', '--firmware', noEs, '--json'])
    expect(r.code).toBe(2)
    const {error} = JSON.parse(r.stdout) as ErrorJson
    expect(error.message).toBe(`${noEs}: the firmware's footer table has no SEV-ES reset block (GUID 00f771de-1a7e-4fcb-890e-68c77e2fb44e), so QEMU cannot start it under SEV-ES`)
    expect(error.hint).toMatch(/--mode sev/)
    const sev = await cli(['measure', disk, '--no-pcr', '--firmware', noEs, '--mode', 'sev', '--json'])
    expect(sev.code, sev.stderr).toBe(0)
    expect((JSON.parse(sev.stdout) as MeasureJson).measurements.map((m) => [m.kind, m.value])).toEqual([['sev-launch', createHash('sha256').update(noEsBytes).digest('hex')]])
  })

  it('measure --mode snp: the SEV-SNP digests of the -bios firmware (/usr/share/ovmf/OVMF.fd) by default, per vCPU count, type and guest features, equal to the oracle\'s', async (ctx) => {
    const snp = BOOKWORM_SNP_OVMF[0]
    bookwormFirmware(snp, (note) => ctx.skip(note))
    const r = await cli(['measure', disk, '--no-pcr', '--json', '--mode', 'snp', '--cpus', '1,4', '--cpu-type', 'EPYC-Genoa', '--guest-features', '0x1,0x21'])
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout) as MeasureJson
    const oracle = Object.fromEntries(snp.snp.filter(([vmm, cpu]) => vmm === 'qemu' && cpu === 'EPYC-Genoa').map(([, , vcpus, gf, digest]) => [`${vcpus} ${gf}`, digest]))
    expect(out.measurements.map((m) => [m.kind, m.algorithm, `${m.params.vcpus} ${m.params.guestFeatures}`, m.value])).toEqual([
      ['snp-launch', 'sha384', '1 0x1', oracle['1 0x1']],
      ['snp-launch', 'sha384', '1 0x21', oracle['1 0x21']],
      ['snp-launch', 'sha384', '4 0x1', oracle['4 0x1']],
      ['snp-launch', 'sha384', '4 0x21', oracle['4 0x21']],
    ])
    for (const m of out.measurements) expect(m.params).toMatchObject({firmware: snp.path, firmwareSha256: snp.sha256, vmm: 'qemu', cpuType: 'EPYC-Genoa'})
    expect(out.notes.join('\n')).toMatch(/MEASUREMENT field of the guest's attestation report/)
  })

  it('measure --mode snp with Debian 12\'s OVMF_CODE_4M.fd, which has no SEV metadata: exit 2 naming the file and the firmware to give instead; a bad --guest-features is refused', async (ctx) => {
    const fw4m = BOOKWORM_NO_SNP_METADATA[0]
    bookwormFirmware(fw4m, (note) => ctx.skip(note))
    const r = await cli(['measure', disk, '--no-pcr', '--json', '--mode', 'snp', '--firmware', fw4m.path])
    expect(r.code).toBe(2)
    const {error} = JSON.parse(r.stdout) as ErrorJson
    expect(error.message).toBe(`${fw4m.path}: the firmware has no SEV metadata (footer GUID dc886566-984a-4798-a75e-5585a7bf67cc), so QEMU refuses to start it under SEV-SNP ("Failed to locate SEV metadata header")`)
    expect(error.hint).toMatch(/--firmware: Debian 12's \/usr\/share\/ovmf\/OVMF\.fd/)
    const gf = await cli(['measure', disk, '--no-pcr', '--json', '--mode', 'snp', '--guest-features', '0x20'])
    expect(gf.code).toBe(2)
    expect((JSON.parse(gf.stdout) as ErrorJson).error.message).toMatch(/^--guest-features 0x20: an SEV-SNP guest's SEV features have SNPActive \(bit 0\) set/)
  })

  it('bad targets and flags: exit 2 with what, where and what to do', async () => {
    const missing = await cli(['measure', join(dir, 'nope.raw'), '--json'])
    expect(missing.code).toBe(2)
    expect((JSON.parse(missing.stdout) as ErrorJson).error).toMatchObject({message: `no disk image at ${join(dir, 'nope.raw')}`, hint: expect.stringMatching(/raw disk image, or a recipe id/)})
    const noBuild = await cli(['measure', 'debian-12', '--json', '--cache-dir', join(dir, 'empty-cache')])
    expect(noBuild.code).toBe(2)
    const e = (JSON.parse(noBuild.stdout) as ErrorJson).error
    expect(e.message).toMatch(/^debian-12 is neither a disk image file nor a recipe with a build: no build record at .*empty-cache\/builds\/debian-12\.json/)
    expect(e.hint).toMatch(/cvm-image build debian-12/)
    const cpus = await cli(['measure', disk, '--cpus', '1,x', '--firmware', noEs, '--mode', 'sev'])
    expect(cpus.code).toBe(2)
    expect(cpus.stderr).toMatch(/--cpus x: a vCPU count is a whole number from 1/)
  })
})

/**
 * The PCR predictions of `measure` on a disk laid out as assemble lays it (GPT, ESP with the UKI at
 * \EFI\BOOT\BOOTX64.EFI), checked against systemd's own systemd-measure on the UKI's sections.
 */
describe('cvm-image measure: PCR 11 and PCR 4 of the UKI on a disk (the built binary; systemd-measure as the check)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cvm-measure-pcr-'))
  afterAll(() => rm(dir, {recursive: true, force: true}))
  const f = (n: string) => join(dir, n)
  const disk = f('disk.raw')
  const measureSections = async (phase: string) => {
    const r = await run('/usr/lib/systemd/systemd-measure', ['calculate', `--linux=${f('linux')}`, `--osrel=${f('osrel')}`, `--cmdline=${f('cmdline')}`, '--bank=sha256', `--phase=${phase}`], {what: 'systemd-measure (package systemd)'})
    return /^11:sha256=([0-9a-f]{64})$/m.exec(r.stdout)![1]
  }

  beforeAll(async () => {
    // the stub wants a PE kernel (an x86-64 EFI application, as Linux's EFI stub makes it): systemd-stub's own file is one
    copyFileSync(EFI_STUB, f('linux'))
    writeFileSync(f('osrel'), 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n')
    writeFileSync(f('cmdline'), 'root=PARTUUID=4f68bce3-e8cd-4db1-96e7-fbcaf984b709 rw console=ttyS0')
    await buildUki({vmlinuz: f('linux'), cmdlineFile: f('cmdline'), osReleaseFile: f('osrel')}, f('uki.efi'), {sourceDateEpoch: 1_700_000_000})
    await run('mkfs.vfat', ['-C', '-F', '32', f('esp.img'), String(40 * 1024)])
    await run('mmd', ['-i', f('esp.img'), '::EFI', '::EFI/BOOT'])
    await run('mcopy', ['-i', f('esp.img'), f('uki.efi'), '::EFI/BOOT/BOOTX64.EFI'])
    await writeFile(disk, '')
    await truncate(disk, 64 * 1024 * 1024)
    await run('sfdisk', ['--quiet', disk], {input: 'label: gpt\nstart=2048, size=81920, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=83968, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709\n'})
    await run('dd', [`if=${f('esp.img')}`, `of=${disk}`, 'bs=1M', 'seek=1', 'conv=notrunc', 'status=none'])
  }, 60_000)

  it('lists PCR 11 before userspace and after systemd-pcrphase (sysinit, ready), equal to systemd-measure on the same sections, and PCR 4 with what it assumes', async () => {
    const r = await cli(['measure', disk, '--mode', 'sev', '--json'])
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout) as MeasureJson
    const pcr11 = out.measurements.filter((m) => m.kind === 'tpm-pcr11')
    expect(pcr11.map((m) => m.params.phase)).toEqual(['stub', 'sysinit:ready'])
    expect(pcr11[0].value).toBe(await measureSections(':'))
    expect(pcr11[1].value).toBe(await measureSections('sysinit:ready'))
    for (const m of pcr11) expect(m.dependsOn).toEqual(['uki'])
    const pcr4 = out.measurements.find((m) => m.kind === 'tpm-pcr4')!
    expect(pcr4.value).toMatch(/^[0-9a-f]{64}$/)
    expect(pcr4.dependsOn).toEqual(expect.arrayContaining(['uki', 'firmware-events', 'boot-order']))
    expect(pcr4.params.ukiSha256).toBe(createHash('sha256').update(readFileSync(f('uki.efi'))).digest('hex'))
    expect(out.measurements.map((m) => m.kind)).toContain('sev-launch')
    expect(out.notes[0]).toMatch(/PCR 11 depends on the UKI alone/)
  })

  it('lists PCR 7 with Secure Boot off for the store validation boots (unsigned: no Secure Boot entry); a --secure-boot-vars that is no store: exit 2 naming it', async () => {
    const r = await cli(['measure', disk, '--mode', 'sev', '--json'])
    expect(r.code, r.stderr).toBe(0)
    const pcr7 = (JSON.parse(r.stdout) as MeasureJson).measurements.filter((m) => m.kind === 'tpm-pcr7')
    expect(pcr7.map((m) => m.params.secureBoot)).toEqual(['off'])
    expect(pcr7[0].params).toMatchObject({varStore: OVMF_VARS, varStoreSha256: createHash('sha256').update(readFileSync(OVMF_VARS)).digest('hex')})
    expect(pcr7[0].dependsOn).toEqual(['secure-boot', 'secure-boot-keys'])
    const bad = await cli(['measure', disk, '--mode', 'sev', '--secure-boot-vars', f('osrel'), '--json'])
    expect(bad.code).toBe(2)
    expect((JSON.parse(bad.stdout) as ErrorJson).error.message).toMatch(new RegExp(`^${f('osrel')} is not an OVMF variable store`))
  })

  it('a disk with no GPT: exit 2 naming the disk and what it lacks, and --no-pcr still lists the launch digests', async () => {
    writeFileSync(f('blank.raw'), Buffer.alloc(64 * 1024))
    const r = await cli(['measure', f('blank.raw'), '--mode', 'sev', '--json'])
    expect(r.code).toBe(2)
    expect((JSON.parse(r.stdout) as ErrorJson).error.message).toMatch(new RegExp(`^${f('blank.raw')}: no GPT header`))
    const ok = await cli(['measure', f('blank.raw'), '--mode', 'sev', '--no-pcr', '--json'])
    expect(ok.code, ok.stderr).toBe(0)
    expect((JSON.parse(ok.stdout) as MeasureJson).measurements.map((m) => m.kind)).toEqual(['sev-launch'])
  })
})
