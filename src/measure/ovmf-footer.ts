import {InputError} from '../errors.js'
import {OVMF_CODE} from '../validate/ovmf-files.js'
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
