import {createHash} from 'node:crypto'

import {InputError} from '../errors.js'
import {sevEsResetAddress, sevHashesTableArea, sevMetadataSections, type SevMetadataSection} from './ovmf-footer.js'
import type {FirmwareImage} from './sev.js'
import {BSP_RESET_ADDRESS, snpVmsaPage, type SnpVmm} from './vmsa.js'

/**
 * The SEV-SNP launch digest (docs/measurements.md "SEV-SNP"): the MEASUREMENT of the guest's
 * attestation report, SHA-384. The PSP starts from 48 zero bytes and, for every page that
 * SNP_LAUNCH_UPDATE adds, replaces the digest with SHA-384 of a 112-byte PAGE_INFO (SEV-SNP firmware
 * ABI, "PAGE_INFO"): the digest so far, the page's contents digest (SHA-384 of its bytes for a normal
 * or VMSA page, zeros for the others), u16 length 0x70, u8 page type, u8 IMI 0, u8 VMPL 3, 2 and 1
 * permissions 0, a reserved byte, and the u64 guest physical address. In QEMU's order:
 *   1. the firmware's pages (-bios: it ends at 4 GiB);
 *   2. each SEV metadata section of the firmware, in its order (ovmf-footer.ts);
 *   3. one VMSA page per vCPU, vCPU 0 first.
 */

const PAGE = 4096
const PAGE_INFO_LENGTH = 0x70
const DIGEST_BYTES = 48
const ZERO_DIGEST = Buffer.alloc(DIGEST_BYTES)
/** The PSP records VMSA pages at GPA 2^64 - 1, page-aligned, with the bits above 51 cleared. */
const VMSA_GPA = 0xfffffffff000n
const FOUR_GIB = 0x1_0000_0000

const PAGE_TYPE = {normal: 1, vmsa: 2, zero: 3, unmeasured: 4, secrets: 5, cpuid: 6} as const

export interface SnpDigestInput {
  firmware: FirmwareImage
  vcpus: number
  /** CPUID 1 EAX of the vCPU model (QEMU; EC2 and GCE use their own) */
  cpuSignature: number
  /** SEV_FEATURES of every VMSA; QEMU asks for SNPActive alone, 0x1 */
  guestFeatures: bigint
  vmm: SnpVmm
  /** the padded SEV hashes table (sev-hashes.ts) of a measured direct boot */
  hashesTable?: Buffer
}

/** The chain of PAGE_INFO digests. */
class LaunchDigest {
  private digest = ZERO_DIGEST

  private update(type: number, gpa: bigint, contents: Buffer): void {
    const info = Buffer.alloc(PAGE_INFO_LENGTH)
    this.digest.copy(info, 0)
    contents.copy(info, DIGEST_BYTES)
    info.writeUInt16LE(PAGE_INFO_LENGTH, 96)
    info.writeUInt8(type, 98)
    // 99: IMI page 0; 100-102: VMPL3, VMPL2, VMPL1 permissions 0; 103 reserved
    info.writeBigUInt64LE(gpa, 104)
    this.digest = createHash('sha384').update(info).digest()
  }

  normalPages(gpa: number, bytes: Buffer): void {
    for (let at = 0; at < bytes.length; at += PAGE) this.update(PAGE_TYPE.normal, BigInt(gpa + at), sha384(bytes.subarray(at, at + PAGE)))
  }

  emptyPages(type: 'zero' | 'unmeasured' | 'secrets' | 'cpuid', gpa: number, size: number): void {
    for (let at = 0; at < size; at += PAGE) this.update(PAGE_TYPE[type], BigInt(gpa + at), ZERO_DIGEST)
  }

  vmsa(page: Buffer): void {
    this.update(PAGE_TYPE.vmsa, VMSA_GPA, sha384(page))
  }

  value(): Buffer {
    return this.digest
  }
}

export function snpLaunchDigest(input: SnpDigestInput): Buffer {
  const {firmware, vmm} = input
  if (!Number.isInteger(input.vcpus) || input.vcpus < 1) throw new InputError(`a guest has at least one vCPU, not ${input.vcpus}`, {hint: 'give --cpus as whole numbers from 1'})
  const sections = snpSections(firmware, input.hashesTable)
  const apStart = sevEsResetAddress(firmware.bytes, firmware.file)
  const ld = new LaunchDigest()
  ld.normalPages(FOUR_GIB - firmware.bytes.length, firmware.bytes)
  for (const s of sections) {
    switch (s.type) {
      case 'snp-sec-mem':
        // GCE adds the firmware's SEC memory unmeasured
        ld.emptyPages(vmm === 'gce' ? 'unmeasured' : 'zero', s.gpa, s.size)
        break
      case 'svsm-caa':
        ld.emptyPages('zero', s.gpa, s.size)
        break
      case 'snp-secrets':
        ld.emptyPages('secrets', s.gpa, PAGE)
        break
      case 'cpuid':
        // EC2 adds the CPUID page after every other section
        if (vmm !== 'ec2') ld.emptyPages('cpuid', s.gpa, PAGE)
        break
      case 'snp-kernel-hashes':
        if (input.hashesTable) ld.normalPages(s.gpa, hashesPage(firmware, s, input.hashesTable))
        else ld.emptyPages('zero', s.gpa, s.size)
        break
    }
  }
  if (vmm === 'ec2') for (const s of sections) if (s.type === 'cpuid') ld.emptyPages('cpuid', s.gpa, PAGE)
  const page = (startAddress: number) => snpVmsaPage({startAddress, cpuSignature: input.cpuSignature, guestFeatures: input.guestFeatures, vmm})
  const bsp = page(BSP_RESET_ADDRESS)
  const ap = page(apStart)
  for (let i = 0; i < input.vcpus; i++) ld.vmsa(i === 0 ? bsp : ap)
  return ld.value()
}

/** The firmware's SEV metadata, checked for what an SNP launch of it needs. */
export function snpSections(firmware: FirmwareImage, hashesTable?: Buffer): SevMetadataSection[] {
  if (firmware.bytes.length % PAGE !== 0 || firmware.bytes.length === 0) {
    throw new InputError(`${firmware.file}: ${firmware.bytes.length} bytes is not a whole number of ${PAGE}-byte pages, so it cannot be an SEV-SNP firmware image (the PSP adds it page by page)`, {
      hint: 'give the OVMF image QEMU gets as -bios with --firmware',
    })
  }
  const sections = sevMetadataSections(firmware.bytes, firmware.file)
  if (hashesTable && !sections.some((s) => s.type === 'snp-kernel-hashes')) {
    throw new InputError(`${firmware.file}: the firmware's SEV metadata has no kernel hashes section (type 0x10), so an SEV-SNP launch cannot bind a kernel, initrd and command line`, {
      hint: 'a measured direct boot under SEV-SNP needs an OVMF built from OvmfPkg/AmdSev/AmdSevX64.dsc (Debian ships none); without --kernel the disk-boot digests need no such section',
    })
  }
  return sections
}

/** The kernel hashes section's page: the table where the footer table's hashes area starts, in that page. */
function hashesPage(firmware: FirmwareImage, section: SevMetadataSection, table: Buffer): Buffer {
  const area = sevHashesTableArea(firmware.bytes, firmware.file)
  const offset = area.base % PAGE
  if (section.size !== PAGE || offset + table.length > PAGE) {
    throw new InputError(`${firmware.file}: the kernel hashes section (base 0x${section.gpa.toString(16)}, ${section.size} bytes) cannot hold the ${table.length}-byte hashes table at offset ${offset} of one page`, {
      hint: 'give an OvmfPkg/AmdSev build whose hashes area lies in its one-page kernel hashes section',
    })
  }
  const page = Buffer.alloc(PAGE)
  table.copy(page, offset)
  return page
}

function sha384(b: Buffer): Buffer {
  return createHash('sha384').update(b).digest()
}
