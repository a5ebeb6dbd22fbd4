import {InputError} from '../errors.js'
import {OVMF_CODE, OVMF_SNP_BIOS} from '../validate/ovmf-files.js'
import {guidBytes, guidString} from './guid.js'

/**
 * OVMF's GUIDed footer table (edk2 OvmfPkg/ResetVector, Ia16/ResetVectorVtf0.asm), which QEMU reads
 * from the flash image before the guest runs (docs/measurements.md "The firmware's footer table").
 *
 * The table ends 32 bytes before the end of the image (the last 32 bytes hold the reset vector). It
 * ends with its own header: a u16 length (the whole table's, this header included) and the footer
 * GUID. The entries lie before it, read backwards from the end: each one is its data followed by a
 * u16 length (data and header) and its GUID.
 */
export const OVMF_FOOTER_GUID = '96b582de-1fb2-45f7-baea-a366c55a082d'
/** data: u32 the address where SEV-ES application processors start (QEMU's "SEV info block") */
export const SEV_ES_RESET_BLOCK_GUID = '00f771de-1a7e-4fcb-890e-68c77e2fb44e'
/** data: u32 base, u32 size of the page where QEMU puts the kernel/initrd/cmdline hashes (OvmfPkg/AmdSev) */
export const SEV_HASH_TABLE_RV_GUID = '7255371f-3a3b-4b04-927b-1da6efa8d454'

/**
 * data: u32 offset, from the end of the image, of OVMF's SEV metadata (OvmfPkg/ResetVector
 * X64/OvmfSevMetadata.asm): the guest memory ranges an SEV-SNP launch must fill before the guest runs.
 */
export const SEV_METADATA_GUID = 'dc886566-984a-4798-a75e-5585a7bf67cc'

/** bytes between the table's end and the image's end */
const FOOTER_GAP = 32
/** a u16 length and a GUID */
const ENTRY_HEADER = 18

export interface OvmfFooterTable {
  /** the firmware file the table was read from (for messages) */
  file: string
  /** by GUID (lower case); where a GUID repeats, the entry nearest the end, the one QEMU finds */
  entries: ReadonlyMap<string, Buffer>
}

/**
 * The footer table of a firmware image, or undefined when the image has none (an OVMF built before
 * the table existed, or not OVMF at all). A table that is there but does not hold together is an
 * error naming the file and the offset.
 */
export function parseOvmfFooterTable(image: Buffer, file: string): OvmfFooterTable | undefined {
  const headerAt = image.length - FOOTER_GAP - ENTRY_HEADER
  if (headerAt < 0) return undefined
  if (!image.subarray(headerAt + 2, headerAt + ENTRY_HEADER).equals(guidBytes(OVMF_FOOTER_GUID))) return undefined
  const tableLength = image.readUInt16LE(headerAt)
  const tableStart = headerAt + ENTRY_HEADER - tableLength
  if (tableLength < ENTRY_HEADER || tableStart < 0) {
    throw badTable(file, `its footer table says it is ${tableLength} bytes long, which does not fit the ${image.length}-byte image (offset ${headerAt})`)
  }
  const entries = new Map<string, Buffer>()
  // walk back from the footer's own header to the table's start
  let end = headerAt
  while (end - tableStart >= ENTRY_HEADER) {
    const at = end - ENTRY_HEADER
    const length = image.readUInt16LE(at)
    const guid = guidString(image.subarray(at + 2, at + ENTRY_HEADER))
    if (length < ENTRY_HEADER || end - length < tableStart) {
      throw badTable(file, `the entry ${guid} at offset ${at} says it is ${length} bytes long, which does not fit the table (offsets ${tableStart} to ${headerAt + ENTRY_HEADER})`)
    }
    if (!entries.has(guid)) entries.set(guid, image.subarray(end - length, at))
    end -= length
  }
  return {file, entries}
}

/**
 * Where SEV-ES application processors start: the u32 of the SEV-ES reset block, as QEMU takes it
 * (target/i386/sev.c sev_es_find_reset_vector). Without it QEMU refuses to start an SEV-ES guest.
 */
export function sevEsResetAddress(image: Buffer, file: string): number {
  const table = requireTable(image, file, 'an SEV-ES launch digest')
  const data = table.entries.get(SEV_ES_RESET_BLOCK_GUID)
  if (!data) {
    throw new InputError(`${file}: the firmware's footer table has no SEV-ES reset block (GUID ${SEV_ES_RESET_BLOCK_GUID}), so QEMU cannot start it under SEV-ES`, {
      details: [`its footer table holds: ${[...table.entries.keys()].join(', ') || 'nothing'}`],
      hint: `give an OVMF built with SEV-ES support (Debian 12 ovmf: ${OVMF_CODE}) with --firmware, or ask only for --mode sev`,
    })
  }
  if (data.length < 4) throw badTable(file, `its SEV-ES reset block holds ${data.length} bytes, not the 4 of an address`)
  const address = data.readUInt32LE(0)
  if (address === 0) throw badTable(file, 'its SEV-ES reset block gives address 0, which QEMU refuses ("SEV-ES reset address is zero")')
  return address
}

/** The page OVMF reserves for QEMU's kernel hashes table (OvmfPkg/AmdSev builds only). */
export function sevHashesTableArea(image: Buffer, file: string): {base: number; size: number} {
  const table = requireTable(image, file, 'a measured direct boot (-kernel with kernel-hashes=on)')
  const data = table.entries.get(SEV_HASH_TABLE_RV_GUID)
  const base = data && data.length >= 8 ? data.readUInt32LE(0) : 0
  const size = data && data.length >= 8 ? data.readUInt32LE(4) : 0
  if (base === 0) {
    throw new InputError(`${file}: the firmware reserves no SEV hashes table (GUID ${SEV_HASH_TABLE_RV_GUID} ${data ? 'gives base 0' : 'is absent'}), so QEMU cannot measure a kernel, initrd and command line into its launch digest`, {
      hint: 'measured direct boot needs an OVMF built from OvmfPkg/AmdSev/AmdSevX64.dsc (Debian 12\'s ovmf package has none); without --kernel the disk-boot digests need no such table',
    })
  }
  return {base, size}
}

/** What the VMM puts in an SEV metadata section's pages before an SEV-SNP guest runs (the u32 type). */
export const SEV_SECTION_TYPES = {
  1: 'snp-sec-mem', // memory OVMF's SEC phase uses, pre-validated: zero pages
  2: 'snp-secrets', // the SNP secrets page the PSP fills
  3: 'cpuid', // the CPUID page the PSP checks
  4: 'svsm-caa', // the SVSM calling area: zero pages
  0x10: 'snp-kernel-hashes', // OvmfPkg/AmdSev: the page of a measured direct boot's hashes
} as const
export type SevSectionType = (typeof SEV_SECTION_TYPES)[keyof typeof SEV_SECTION_TYPES]

export interface SevMetadataSection {
  /** guest physical address, page-aligned */
  gpa: number
  /** bytes, a whole number of pages */
  size: number
  type: SevSectionType
}

const SEV_METADATA_HEADER = 16
const SEV_METADATA_SECTION = 12
const PAGE = 4096

/**
 * The SEV metadata sections of a firmware image, in the order the image lists them (the order they
 * are measured). QEMU refuses to launch an SEV-SNP guest from a firmware without them ("Failed to
 * locate SEV metadata header"), and so does this. Layout: the signature "ASEV", u32 length (header
 * and sections), u32 version 1, u32 number of sections, then per section u32 base, u32 size, u32 type.
 */
export function sevMetadataSections(image: Buffer, file: string): SevMetadataSection[] {
  const table = requireTable(image, file, 'an SEV-SNP launch digest')
  const data = table.entries.get(SEV_METADATA_GUID)
  if (!data) {
    throw new InputError(`${file}: the firmware has no SEV metadata (footer GUID ${SEV_METADATA_GUID}), so QEMU refuses to start it under SEV-SNP ("Failed to locate SEV metadata header")`, {
      details: [`its footer table holds: ${[...table.entries.keys()].join(', ') || 'nothing'}`, 'OVMF builds without it: Debian 12\'s 4 MiB images (OVMF_CODE_4M.fd, OVMF_CODE_4M.secboot.fd, ovmf 2022.11)'],
      hint: `give an OVMF with SEV-SNP support with --firmware: Debian 12's ${OVMF_SNP_BIOS} or /usr/share/OVMF/OVMF_CODE.fd, or Debian 13's OVMF_CODE_4M.fd`,
    })
  }
  if (data.length < 4) throw badTable(file, `its SEV metadata entry holds ${data.length} bytes, not the 4 of an offset`)
  const offset = data.readUInt32LE(0)
  const at = image.length - offset
  if (offset > image.length || at + SEV_METADATA_HEADER > image.length) {
    throw badTable(file, `its SEV metadata entry points ${offset} bytes before the end of the ${image.length}-byte image, where no metadata header fits`)
  }
  const signature = image.subarray(at, at + 4).toString('latin1')
  const length = image.readUInt32LE(at + 4)
  const version = image.readUInt32LE(at + 8)
  const count = image.readUInt32LE(at + 12)
  if (signature !== 'ASEV') throw badTable(file, `the SEV metadata at offset ${at} starts with ${JSON.stringify(signature)}, not the signature "ASEV"`)
  if (version !== 1) throw badTable(file, `the SEV metadata at offset ${at} is version ${version}; only version 1 is known`)
  if (length < SEV_METADATA_HEADER + count * SEV_METADATA_SECTION || at + length > image.length) {
    throw badTable(file, `the SEV metadata at offset ${at} says it is ${length} bytes with ${count} sections, which does not fit (${SEV_METADATA_HEADER} + ${SEV_METADATA_SECTION} per section, inside the image)`)
  }
  const sections: SevMetadataSection[] = []
  for (let i = 0; i < count; i++) {
    const p = at + SEV_METADATA_HEADER + i * SEV_METADATA_SECTION
    const gpa = image.readUInt32LE(p)
    const size = image.readUInt32LE(p + 4)
    const code = image.readUInt32LE(p + 8)
    const type = (SEV_SECTION_TYPES as Record<number, SevSectionType>)[code]
    const where = `SEV metadata section ${i} (base 0x${gpa.toString(16)}, ${size} bytes)`
    if (!type) throw badTable(file, `${where} has type ${code}, which no VMM knows (known: ${Object.entries(SEV_SECTION_TYPES).map(([c, t]) => `${c} ${t}`).join(', ')})`)
    if (gpa % PAGE !== 0 || size % PAGE !== 0) throw badTable(file, `${where} is not whole pages: the PSP measures guest memory page by page`)
    if ((type === 'snp-secrets' || type === 'cpuid') && size !== PAGE) throw badTable(file, `${where}, the ${type} page, is not one page`)
    sections.push({gpa, size, type})
  }
  return sections
}

function requireTable(image: Buffer, file: string, forWhat: string): OvmfFooterTable {
  const table = parseOvmfFooterTable(image, file)
  if (table) return table
  throw new InputError(`${file}: no OVMF footer table (GUID ${OVMF_FOOTER_GUID} is not ${FOOTER_GAP + 16} bytes before the end of the file), which ${forWhat} needs`, {
    details: ['the file is not an OVMF firmware image, or an OVMF older than the footer table'],
    hint: `give the OVMF code image QEMU loads as pflash unit 0 (e.g. ${OVMF_CODE}) with --firmware`,
  })
}

function badTable(file: string, what: string): InputError {
  return new InputError(`${file}: a damaged OVMF footer table: ${what}`, {
    hint: 'check that the file is the firmware QEMU loads (compare its sha256 with the package\'s), or give another with --firmware',
  })
}
