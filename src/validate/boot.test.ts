import {describe, expect, it} from 'vitest'

import {firmwareRefusal} from './boot.js'

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
