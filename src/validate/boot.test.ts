import {mkdtemp, rm, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {after} from '../../test/helpers/qemu-spec.js'
import {firmwareRefusal, GuestBoot} from './boot.js'
import {LocalHost} from './host.js'
import {modeSupport, OVMF_SNP_BIOS, OVMF_TDX_BIOS, requireMode, type HostReport} from './host-probe.js'

// Recorded from Debian 12's OVMF_CODE_4M.secboot.fd with OVMF_VARS_4M.snakeoil.fd (QEMU, TCG) booting
// an unsigned debian-12 disk, and a signed one: the console's escape sequences as it wrote them.
const ESC = '\x1b'
const REFUSED = [
  `${ESC}[2J${ESC}[01;01H${ESC}[=3h${ESC}[2J${ESC}[01;01HBdsDxe: loading Boot0001 "UEFI QEMU NVMe Ctrl cvmroot 1" from PciRoot(0x0)/Pci(0x1,0x0)/NVMe(0x1,00-00-00-00-00-00-00-00)`,
  'BdsDxe: failed to load Boot0001 "UEFI QEMU NVMe Ctrl cvmroot 1" from PciRoot(0x0)/Pci(0x1,0x0)/NVMe(0x1,00-00-00-00-00-00-00-00): Access Denied',
  'BdsDxe: failed to load Boot0002 "UEFI QEMU NVMe Ctrl cvmscratch 1" from PciRoot(0x0)/Pci(0x2,0x0)/NVMe(0x1,00-00-00-00-00-00-00-00): Not Found',
  '',
  '>>Start PXE over IPv4.',
]
const BOOTED = [
  `${ESC}[2J${ESC}[01;01HBdsDxe: loading Boot0001 "UEFI QEMU NVMe Ctrl cvmroot 1" from PciRoot(0x0)/Pci(0x1,0x0)/NVMe(0x1,00-00-00-00-00-00-00-00)`,
  'BdsDxe: starting Boot0001 "UEFI QEMU NVMe Ctrl cvmroot 1" from PciRoot(0x0)/Pci(0x1,0x0)/NVMe(0x1,00-00-00-00-00-00-00-00)',
  'EFI stub: UEFI Secure Boot is enabled.',
  '[    0.000000] secureboot: Secure boot enabled',
]

describe('firmwareRefusal: when waiting for the guest stops because the firmware will not boot the disk', () => {
  it('names the root disk\'s refused boot option as soon as the firmware prints it, before the network options', () => {
    expect(firmwareRefusal(REFUSED.join('\r\n'))).toBe(
      'the firmware would not boot the disk: BdsDxe: failed to load Boot0001 "UEFI QEMU NVMe Ctrl cvmroot 1" from PciRoot(0x0)/Pci(0x1,0x0)/NVMe(0x1,00-00-00-00-00-00-00-00): Access Denied',
    )
  })

  it('says nothing while the disk loads and boots, or before the firmware has tried it', () => {
    expect(firmwareRefusal(BOOTED.join('\n'))).toBeUndefined()
    expect(firmwareRefusal(REFUSED[0])).toBeUndefined()
    expect(firmwareRefusal('')).toBeUndefined()
  })

  it('once nothing is left to try, lists the refusals that are not a missing option, and the closing line', () => {
    const serial = [
      'BdsDxe: failed to load Boot0004 "UEFI PXEv4 (MAC:525400123456)" from PciRoot(0x0)/Pci(0x4,0x0)/MAC(525400123456,0x1): Not Found',
      'BdsDxe: failed to start Boot0009 "EFI Internal Shell" from Fv(7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1)/FvFile(7C04A583-9E3E-4F1C-AD65-E05268D0B4D1): Security Violation',
      'BdsDxe: No bootable option or device was found.',
      'BdsDxe: Press any key to enter the Boot Manager Menu.',
    ].join('\n')
    expect(firmwareRefusal(serial)).toBe(
      'the firmware found nothing it may boot: BdsDxe: failed to start Boot0009 "EFI Internal Shell" from Fv(7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1)/FvFile(7C04A583-9E3E-4F1C-AD65-E05268D0B4D1): Security Violation | BdsDxe: No bootable option or device was found.',
    )
  })
})

/** A probe report of a host new enough for snp and tdx. None exists here: only the report is invented. */
const simulated = (vendor: 'AuthenticAMD' | 'GenuineIntel'): HostReport => {
  const r: Omit<HostReport, 'modes'> = {
    host: `simulated-${vendor}`,
    cpuVendor: vendor,
    kvm: {device: true, usable: true, detail: 'simulated'},
    sev: {kvmAmd: {loaded: vendor === 'AuthenticAMD', sev: true, sevEs: true, sevSnp: true}, devSev: true, asids: {}, firmware: {snp: true, api: '1.55', line: 'SEV-SNP API:1.55 build:21'}, cbitpos: 51},
    tdx: {kvmIntel: {loaded: vendor === 'GenuineIntel', tdx: true}},
    qemu: {binary: 'qemu-system-x86_64', version: '10.1.0'},
    ovmf: {code: '/usr/share/OVMF/OVMF_CODE_4M.fd', vars: '/usr/share/OVMF/OVMF_VARS_4M.fd', present: true, secureBootCode: true, bios: {path: OVMF_SNP_BIOS, present: true}},
    swtpm: {binary: 'swtpm', version: '0.7.1'},
  }
  return {...r, modes: modeSupport(r)}
}

describe('GuestBoot.prepare for snp and tdx on a simulated new-enough host (the boot\'s files made here for real; QEMU not started)', () => {
  it.each([['snp', 'AuthenticAMD'], ['tdx', 'GenuineIntel']] as const)('%s: the host report passes, and the argv boots %s\'s OVMF.fd as -bios with no variable store', async (mode, vendor) => {
    const report = simulated(vendor)
    expect(() => requireMode(report, mode)).not.toThrow()
    const work = await mkdtemp(join(tmpdir(), `cvm-boot-${mode}-`))
    const host = new LocalHost()
    try {
      const boot = await GuestBoot.prepare({
        host, local: host, tag: mode, mode, accel: 'kvm', disk: '/img/disk.raw', vtpm: false, work, seed: 'disk',
        templatesDir: join(import.meta.dirname, '..', '..', 'templates'), hostname: 'boot-test', memoryMiB: 2048, cpus: 2,
        cbitpos: report.sev.cbitpos, bootTimeoutMs: 1000, log: () => {}, progress: () => {},
      })
      expect(after(boot.qemuArgs, '-bios')).toEqual([mode === 'snp' ? OVMF_SNP_BIOS : OVMF_TDX_BIOS])
      expect(after(boot.qemuArgs, '-object')).toEqual([mode === 'snp' ? 'sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000' : 'tdx-guest,id=tdx0'])
      expect(boot.qemuArgs.join(' ')).not.toContain('pflash')
      await expect(stat(join(work, mode, 'OVMF_VARS.fd'))).rejects.toThrow(/ENOENT/)
      // the seed and scratch disks are there, as for any boot
      expect(after(boot.qemuArgs, '-device').filter((d) => d.startsWith('nvme,'))).toEqual(['nvme,drive=disk0,serial=cvmroot', 'nvme,drive=disk1,serial=cvmscratch', 'nvme,drive=disk2,serial=cvmseed'])
      await boot.stop()
    } finally {
      await host.cleanup()
      await rm(work, {recursive: true, force: true})
    }
  }, 60_000)
})
