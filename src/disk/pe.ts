import {InputError} from '../errors.js'

/**
 * The parts of a PE/COFF image that UEFI firmware and systemd-stub read when they measure it
 * (docs/pcr-measurements.md). Every offset is checked against the buffer: a damaged or hostile
 * file is an InputError naming the field, never a RangeError.
 */

export const PE_MACHINE_X86_64 = 0x8664
/** IMAGE_SUBSYSTEM_EFI_APPLICATION: what firmware measures into PCR 4 */
export const PE_SUBSYSTEM_EFI_APPLICATION = 10
/** data directory index of the certificate table (IMAGE_DIRECTORY_ENTRY_SECURITY) */
const SECURITY_DIRECTORY = 4
const PE32_MAGIC = 0x10b
const PE32_PLUS_MAGIC = 0x20b
const SECTION_HEADER_SIZE = 40

export interface PeSectionHeader {
  /** the 8 bytes of the header's name field, as they are (NUL-padded, not always NUL-terminated) */
  rawName: Buffer
  /** rawName up to its first NUL */
  name: string
  virtualSize: number
  virtualAddress: number
  sizeOfRawData: number
  pointerToRawData: number
}

export interface PeHeaders {
  machine: number
  numberOfSections: number
  /** 0x10b (PE32) or 0x20b (PE32+) */
  magic: number
  majorImageVersion: number
  subsystem: number
  sizeOfHeaders: number
  /** file offset of the optional header's CheckSum field */
  checksumOffset: number
  numberOfRvaAndSizes: number
  /** file offset of the certificate table's data directory entry, if the image has that entry */
  certDirectoryOffset?: number
  /** the certificate table's size as its directory entry says (0 when unsigned or absent) */
  certTableSize: number
  sections: PeSectionHeader[]
}

/** Reads the DOS, COFF and optional headers and the section table of a PE image. */
export function parsePe(image: Buffer, what = 'the PE image'): PeHeaders {
  const need = (end: number, field: string) => {
    if (end > image.length) throw new InputError(`${what} is cut short: its ${field} ends at byte ${end}, past its end (${image.length} bytes)`)
  }
  need(0x40, 'DOS header')
  if (image.toString('latin1', 0, 2) !== 'MZ') throw new InputError(`${what} is not a PE image (no MZ header)`)
  const pe = image.readUInt32LE(0x3c)
  need(pe + 24, 'COFF header')
  if (image.toString('latin1', pe, pe + 4) !== 'PE\0\0') throw new InputError(`${what} is not a PE image (no PE signature at 0x${pe.toString(16)})`)
  const machine = image.readUInt16LE(pe + 4)
  const numberOfSections = image.readUInt16LE(pe + 6)
  const sizeOfOptionalHeader = image.readUInt16LE(pe + 20)
  const opt = pe + 24
  need(opt + 2, 'optional header')
  const magic = image.readUInt16LE(opt)
  if (magic !== PE32_MAGIC && magic !== PE32_PLUS_MAGIC) throw new InputError(`${what}: unknown optional header magic 0x${magic.toString(16)}`)
  // PE32 has BaseOfData and a 4-byte ImageBase where PE32+ has an 8-byte ImageBase; the sizes
  // that follow (stack, heap) are 4 or 8 bytes: the data directories start at 96 or 112
  const dirs = opt + (magic === PE32_MAGIC ? 96 : 112)
  need(dirs, 'optional header')
  if (dirs > opt + sizeOfOptionalHeader) throw new InputError(`${what}: SizeOfOptionalHeader ${sizeOfOptionalHeader} is too small for its optional header`)
  const numberOfRvaAndSizes = image.readUInt32LE(dirs - 4)
  let certDirectoryOffset: number | undefined
  let certTableSize = 0
  if (numberOfRvaAndSizes > SECURITY_DIRECTORY) {
    certDirectoryOffset = dirs + SECURITY_DIRECTORY * 8
    need(certDirectoryOffset + 8, 'certificate table directory entry')
    certTableSize = image.readUInt32LE(certDirectoryOffset + 4)
  }
  const table = opt + sizeOfOptionalHeader
  need(table + numberOfSections * SECTION_HEADER_SIZE, 'section table')
  const sections: PeSectionHeader[] = []
  for (let i = 0; i < numberOfSections; i++) {
    const s = table + i * SECTION_HEADER_SIZE
    const rawName = Buffer.from(image.subarray(s, s + 8))
    const nul = rawName.indexOf(0)
    sections.push({
      rawName,
      name: rawName.toString('latin1', 0, nul === -1 ? 8 : nul),
      virtualSize: image.readUInt32LE(s + 8),
      virtualAddress: image.readUInt32LE(s + 12),
      sizeOfRawData: image.readUInt32LE(s + 16),
      pointerToRawData: image.readUInt32LE(s + 20),
    })
  }
  return {
    machine,
    numberOfSections,
    magic,
    majorImageVersion: image.readUInt16LE(opt + 44),
    subsystem: image.readUInt16LE(opt + 68),
    sizeOfHeaders: image.readUInt32LE(opt + 60),
    checksumOffset: opt + 64,
    numberOfRvaAndSizes,
    certDirectoryOffset,
    certTableSize,
    sections,
  }
}

/**
 * A section's bytes as the loader puts them in memory at its VirtualAddress: the first
 * min(VirtualSize, SizeOfRawData) bytes of its raw data, then zeros up to VirtualSize (edk2's
 * PeCoffLoaderLoadImage). VirtualSize 0 means SizeOfRawData, as the loader reads it.
 */
export function sectionInMemory(image: Buffer, s: PeSectionHeader, what = 'the PE image'): Buffer {
  const size = s.virtualSize || s.sizeOfRawData
  const fromFile = Math.min(size, s.sizeOfRawData)
  if (s.pointerToRawData + fromFile > image.length) {
    throw new InputError(`${what}: section ${s.name} has its raw data at 0x${s.pointerToRawData.toString(16)}+0x${fromFile.toString(16)}, past the end of the file`)
  }
  const raw = image.subarray(s.pointerToRawData, s.pointerToRawData + fromFile)
  return fromFile === size ? Buffer.from(raw) : Buffer.concat([raw, Buffer.alloc(size - fromFile)])
}
