/**
 * Firmware images made byte by byte, with the footer table OVMF's reset vector carries (edk2
 * OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm): for what Debian's ovmf cannot give (an
 * OvmfPkg/AmdSev build with a kernel hashes area) and for damaged tables. Written apart from
 * src/measure (its own GUID encoding), so a mistake there does not cancel out here; the same bytes
 * always come out, so an oracle computed over them once stays valid (the tests check their sha256).
 */

export const GUIDS = {
  footer: '96b582de-1fb2-45f7-baea-a366c55a082d',
  sevEsResetBlock: '00f771de-1a7e-4fcb-890e-68c77e2fb44e',
  sevHashTable: '7255371f-3a3b-4b04-927b-1da6efa8d454',
  sevSecret: '4c2eb361-7d9b-4cc3-8081-127c90d3d294',
  sevMetadata: 'dc886566-984a-4798-a75e-5585a7bf67cc',
} as const

/** EFI's stored form: time_low, time_mid, time_hi little-endian; the last 8 bytes as written. */
export function efiGuid(guid: string): Buffer {
  const hex = guid.replaceAll('-', '')
  const be = Buffer.from(hex, 'hex')
  return Buffer.concat([Buffer.from(be.subarray(0, 4)).reverse(), Buffer.from(be.subarray(4, 6)).reverse(), Buffer.from(be.subarray(6, 8)).reverse(), be.subarray(8)])
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(n)
  return b
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16LE(n)
  return b
}

/** Deterministic filler bytes. */
export function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length)
  for (let i = 0; i < length; i++) b[i] = (i * 131 + seed * 17 + (i >> 8)) & 0xff
  return b
}

export interface FooterEntry {
  guid: string
  data: Buffer
  /** a length to write instead of the true one (a damaged entry) */
  length?: number
}

/** OVMF's SEV metadata (OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm), written where an image's footer entry points. */
export interface SevMetadata {
  /** where it starts, in bytes before the end of the image */
  offsetFromEnd: number
  /** [base, size, type]: 1 SEC memory, 2 secrets, 3 CPUID, 4 SVSM calling area, 0x10 kernel hashes */
  sections: [number, number, number][]
  signature?: string
  version?: number
}

/** The metadata block: "ASEV", u32 length, u32 version, u32 count, then u32 base, size, type per section. */
export function sevMetadataBlock(m: SevMetadata): Buffer {
  const head = Buffer.concat([Buffer.from(m.signature ?? 'ASEV', 'latin1'), u32(16 + 12 * m.sections.length), u32(m.version ?? 1), u32(m.sections.length)])
  return Buffer.concat([head, ...m.sections.map(([base, size, type]) => Buffer.concat([u32(base), u32(size), u32(type)]))])
}

/**
 * An image of `size` bytes whose footer table, ending 32 bytes before the end, holds `entries`
 * (the last one nearest the footer). `footer: false` leaves the table out entirely. `sevMetadata`
 * writes that block and adds its footer entry first.
 */
export function syntheticOvmf(opts: {size?: number; entries?: FooterEntry[]; footer?: boolean; tableLength?: number; sevMetadata?: SevMetadata}): Buffer {
  const size = opts.size ?? 64 * 1024
  const image = pattern(size, 1)
  if (opts.footer === false) return image
  if (opts.sevMetadata) {
    sevMetadataBlock(opts.sevMetadata).copy(image, size - opts.sevMetadata.offsetFromEnd)
    opts = {...opts, entries: [{guid: GUIDS.sevMetadata, data: u32(opts.sevMetadata.offsetFromEnd)}, ...(opts.entries ?? [])]}
  }
  const parts = (opts.entries ?? []).map((e) => Buffer.concat([e.data, u16(e.length ?? e.data.length + 18), efiGuid(e.guid)]))
  const body = Buffer.concat(parts)
  const table = Buffer.concat([body, u16(opts.tableLength ?? body.length + 18), efiGuid(GUIDS.footer)])
  table.copy(image, size - 32 - table.length)
  return image
}

/** What an OvmfPkg/AmdSev build reserves: an SEV-ES reset block, a secret area and a kernel hashes area. */
export const AMDSEV_LIKE_ENTRIES: FooterEntry[] = [
  {guid: GUIDS.sevHashTable, data: Buffer.concat([u32(0x00810c00), u32(0x400)])},
  {guid: GUIDS.sevSecret, data: Buffer.concat([u32(0x00810000), u32(0xc00)])},
  {guid: GUIDS.sevEsResetBlock, data: u32(0x0080b004)},
]

/**
 * An OvmfPkg/AmdSev-like image for SEV-SNP: the sections Debian 12's OVMF.fd lists, with a kernel
 * hashes page at 0x80f000 whose hashes area (footer) starts 0xc00 into it, and an SVSM calling area.
 */
export const SNP_AMDSEV_LIKE = {
  entries: [
    {guid: GUIDS.sevHashTable, data: Buffer.concat([u32(0x0080fc00), u32(0x400)])},
    {guid: GUIDS.sevEsResetBlock, data: u32(0x0080b004)},
  ] as FooterEntry[],
  sevMetadata: {
    offsetFromEnd: 0x800,
    sections: [
      [0x800000, 0x9000, 1],
      [0x80a000, 0x3000, 1],
      [0x80d000, 0x1000, 2],
      [0x80e000, 0x1000, 3],
      [0x80f000, 0x1000, 0x10],
      [0x810000, 0x1000, 4],
      [0x811000, 0xf000, 1],
    ],
  } as SevMetadata,
}
