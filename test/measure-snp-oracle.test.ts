import {createHash} from 'node:crypto'
import {mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {parseCpuType} from '../src/measure/cpu-types.js'
import {launchMeasurements} from '../src/measure/launch.js'
import {kernelLoaderHashes, sevHashesTable} from '../src/measure/sev-hashes.js'
import {snpLaunchDigest} from '../src/measure/snp.js'
import type {FirmwareImage} from '../src/measure/sev.js'
import {
  BOOKWORM_NO_SNP_METADATA,
  BOOKWORM_SNP_OVMF,
  bookwormFirmware,
  SYNTHETIC_SNP,
  SYNTHETIC_SNP_FIRMWARE_SHA256,
  TRIXIE_SNP_OVMF,
  trixieOvmf,
  type SnpOracleDigest,
} from './helpers/snp-oracle.js'
import {pattern, SNP_AMDSEV_LIKE, syntheticOvmf} from './helpers/synthetic-ovmf.js'
import {inputRefusal as refusal} from './helpers/refusal.js'

/**
 * src/measure's SEV-SNP launch digests against an independent implementation,
 * virtee/sev-snp-measure v0.0.13: the commands and versions that gave each digest are in
 * test/helpers/snp-oracle.ts. A firmware whose sha256 is not the one the oracle ran on is skipped,
 * saying so; trixie's firmware comes from the Debian mirror (skipped, saying so, when it cannot be
 * reached).
 */

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const key = ([vmm, cpu, vcpus, gf]: SnpOracleDigest | [string, string | undefined, number, string]) => `${vmm} ${cpu ?? '-'} ${vcpus} ${gf}`

function computed(firmware: FirmwareImage, oracle: SnpOracleDigest[], hashesTable?: Buffer): Record<string, string> {
  return Object.fromEntries(
    oracle.map((d) => {
      const [vmm, cpu, vcpus, gf] = d
      const digest = snpLaunchDigest({firmware, hashesTable, vcpus, vmm, cpuSignature: cpu ? parseCpuType(cpu).signature : 0, guestFeatures: BigInt(gf)})
      return [key(d), digest.toString('hex')]
    }),
  )
}
const expected = (oracle: SnpOracleDigest[]) => Object.fromEntries(oracle.map((d) => [key(d), d[4]]))

describe('SEV-SNP launch digests against virtee/sev-snp-measure on Debian 12 OVMF', () => {
  for (const fw of BOOKWORM_SNP_OVMF) {
    it(`${fw.path}: 22 digests (QEMU: EPYC-v4, EPYC-Milan, EPYC-Genoa x 1/2/4 vCPUs x guest features 0x1/0x21; EC2 and GCE: 1/4 vCPUs) equal the oracle's`, (ctx) => {
      const bytes = bookwormFirmware(fw, (note) => ctx.skip(note))
      expect(computed({file: fw.path, bytes}, fw.snp)).toEqual(expected(fw.snp))
    })
  }

  for (const fw of BOOKWORM_NO_SNP_METADATA) {
    it(`${fw.path} has no SEV metadata: refused, as QEMU refuses it ("Failed to locate SEV metadata header"), naming the file and the firmware that has it`, (ctx) => {
      const bytes = bookwormFirmware(fw, (note) => ctx.skip(note))
      const e = refusal(() => snpLaunchDigest({firmware: {file: fw.path, bytes}, vcpus: 1, cpuSignature: parseCpuType('EPYC-v4').signature, guestFeatures: 1n, vmm: 'qemu'}))
      expect(e.message).toBe(`${fw.path}: the firmware has no SEV metadata (footer GUID dc886566-984a-4798-a75e-5585a7bf67cc), so QEMU refuses to start it under SEV-SNP ("Failed to locate SEV metadata header")`)
      expect(e.hint).toMatch(/\/usr\/share\/ovmf\/OVMF\.fd/)
    })
  }

  it('the measure service lists, per VMM, vCPU count, vCPU type (QEMU only) and guest features, the oracle\'s digests with what each depends on', async (ctx) => {
    const fw = BOOKWORM_SNP_OVMF[0]
    bookwormFirmware(fw, (note) => ctx.skip(note))
    const entries = await launchMeasurements({firmware: [], snpFirmware: [fw.path], modes: ['snp'], cpus: [1, 4], cpuTypes: ['EPYC-Genoa', '25/1/1'], vmsaForms: [], guestFeatures: [0x1n, 0x21n], vmms: ['qemu', 'ec2']})
    // QEMU: 2 counts x 2 types x 2 features; EC2: 2 counts x 2 features, one type
    expect(entries).toHaveLength(8 + 4)
    const oracle = expected(fw.snp)
    const asNamed: Record<string, string> = {'EPYC-Genoa': 'EPYC-Genoa', '25/1/1': 'EPYC-Milan'}
    const qemu = entries.filter((e) => e.params.vmm === 'qemu')
    for (const e of qemu) {
      expect(e.value, JSON.stringify(e.params)).toBe(oracle[key(['qemu', asNamed[String(e.params.cpuType)], Number(e.params.vcpus), String(e.params.guestFeatures)])])
      expect(e.dependsOn).toEqual(['firmware', 'vcpus', 'cpu-signature', 'guest-features', 'vmm'])
    }
    const ec2 = entries.filter((e) => e.params.vmm === 'ec2')
    // EC2 has no oracle run with 0x21: its 0x1 entries are checked, and 0x21 differs from them
    for (const e of ec2.filter((x) => x.params.guestFeatures === '0x1')) expect(e.value).toBe(oracle[key(['ec2', undefined, Number(e.params.vcpus), '0x1'])])
    expect(new Set(ec2.map((e) => e.value)).size).toBe(4)
    for (const e of ec2) expect(e.dependsOn).toEqual(['firmware', 'vcpus', 'guest-features', 'vmm'])
    for (const e of entries) {
      expect(e).toMatchObject({kind: 'snp-launch', algorithm: 'sha384'})
      expect(e.value).toMatch(/^[0-9a-f]{96}$/)
      expect(e.params).toMatchObject({firmware: fw.path, firmwareSha256: fw.sha256, apResetAddress: '0x0080b004'})
      expect(e.params.sevMetadata).toBe('snp-sec-mem 0x800000+0x9000, snp-sec-mem 0x80a000+0x3000, snp-secrets 0x80d000+0x1000, cpuid 0x80e000+0x1000, snp-sec-mem 0x80f000+0x11000')
    }
    expect(qemu.find((e) => e.params.cpuType === '25/1/1')?.params.cpuSignature).toBe('0x00a00f11')
  })
})

describe('SEV-SNP launch digests against virtee/sev-snp-measure on Debian 13 (trixie) OVMF, from the Debian mirror', () => {
  for (const fw of TRIXIE_SNP_OVMF) {
    it(`${fw.path} of ovmf 2025.02-8+deb13u1: 22 digests equal the oracle's`, async (ctx) => {
      const root = await trixieOvmf((note) => ctx.skip(note))
      const bytes = readFileSync(join(root, fw.path))
      // the .deb's sha256 is checked on download; this says the oracle ran on these very bytes
      expect(sha256(bytes)).toBe(fw.sha256)
      expect(computed({file: fw.path, bytes}, fw.snp)).toEqual(expected(fw.snp))
    }, 120_000)
  }
})

describe('SEV-SNP measured direct boot against virtee/sev-snp-measure on a synthetic OvmfPkg/AmdSev-like firmware', () => {
  const firmwareBytes = syntheticOvmf(SNP_AMDSEV_LIKE)
  const firmware = {file: 'snp-amdsev-like.fd', bytes: firmwareBytes}
  const dir = mkdtempSync(join(tmpdir(), 'cvm-snp-oracle-'))
  afterAll(() => rm(dir, {recursive: true, force: true}))
  const kernel = join(dir, 'vmlinuz')
  const initrd = join(dir, 'initrd')
  writeFileSync(kernel, pattern(100_000, 2))
  writeFileSync(initrd, pattern(50_000, 3))

  it('the synthetic firmware is the bytes the oracle was computed over', () => {
    expect(sha256(firmwareBytes)).toBe(SYNTHETIC_SNP_FIRMWARE_SHA256)
  })

  it('the kernel hashes page (full, kernel alone) and the zero page without a kernel, under QEMU, EC2 and GCE, equal the oracle\'s', async () => {
    const tables = {
      full: sevHashesTable(await kernelLoaderHashes({kernel, initrd, append: 'console=ttyS0 root=/dev/vda1'})),
      'kernel-only': sevHashesTable(await kernelLoaderHashes({kernel})),
      disk: undefined,
    }
    const got = Object.fromEntries(SYNTHETIC_SNP.map(([boot, ...d]) => [`${boot} ${key([d[0], d[1], d[2], d[3]])}`, computed(firmware, [[...d]], tables[boot])[key([d[0], d[1], d[2], d[3]])]]))
    expect(got).toEqual(Object.fromEntries(SYNTHETIC_SNP.map(([boot, ...d]) => [`${boot} ${key([d[0], d[1], d[2], d[3]])}`, d[4]])))
  })

  it('a kernel with a firmware whose metadata has no kernel hashes section is refused, as the oracle refuses it', async (ctx) => {
    const fw = BOOKWORM_SNP_OVMF[0]
    const bytes = bookwormFirmware(fw, (note) => ctx.skip(note))
    const table = sevHashesTable(await kernelLoaderHashes({kernel}))
    const e = refusal(() => snpLaunchDigest({firmware: {file: fw.path, bytes}, hashesTable: table, vcpus: 1, cpuSignature: 0, guestFeatures: 1n, vmm: 'qemu'}))
    expect(e.message).toBe(`${fw.path}: the firmware's SEV metadata has no kernel hashes section (type 0x10), so an SEV-SNP launch cannot bind a kernel, initrd and command line`)
    expect(e.hint).toMatch(/OvmfPkg\/AmdSev/)
  })
})
