import {createHash} from 'node:crypto'

import {describe, expect, it} from 'vitest'

import {AMDSEV_LIKE_ENTRIES, GUIDS, SNP_AMDSEV_LIKE, u32, syntheticOvmf, type SevMetadata} from '../../test/helpers/synthetic-ovmf.js'
import {parseOvmfFooterTable, sevEsResetAddress, sevHashesTableArea, sevMetadataSections} from './ovmf-footer.js'
import {sevEsLaunchDigest, sevLaunchDigest} from './sev.js'
import {inputRefusal as refusal} from '../../test/helpers/refusal.js'

/** The footer table reader on images made byte by byte (test/helpers/synthetic-ovmf.ts). */

describe('reading the footer table', () => {
  it('finds every entry by GUID, with its data, and the SEV-ES reset address and hashes area in them', () => {
    const image = syntheticOvmf({entries: AMDSEV_LIKE_ENTRIES})
    const table = parseOvmfFooterTable(image, 'fw.fd')
    expect(table?.file).toBe('fw.fd')
    expect(new Map([...(table?.entries ?? [])].map(([g, d]) => [g, d.toString('hex')]))).toEqual(
      new Map([
        [GUIDS.sevEsResetBlock, '04b08000'],
        [GUIDS.sevSecret, '00008100000c0000'],
        [GUIDS.sevHashTable, '000c810000040000'],
      ]),
    )
    expect(sevEsResetAddress(image, 'fw.fd')).toBe(0x0080b004)
    expect(sevHashesTableArea(image, 'fw.fd')).toEqual({base: 0x00810c00, size: 0x400})
  })

  it('where a GUID repeats, takes the entry nearest the end of the image, as QEMU does', () => {
    const image = syntheticOvmf({entries: [{guid: GUIDS.sevEsResetBlock, data: u32(0x1111)}, {guid: GUIDS.sevEsResetBlock, data: u32(0x2222)}]})
    expect(sevEsResetAddress(image, 'fw.fd')).toBe(0x2222)
  })

  it('an image with no footer table has none, and an SEV-ES digest of it is refused naming the file, while SEV (which needs no table) is its sha256', () => {
    const image = syntheticOvmf({footer: false})
    expect(parseOvmfFooterTable(image, 'plain.fd')).toBeUndefined()
    expect(parseOvmfFooterTable(Buffer.alloc(40), 'tiny.fd')).toBeUndefined()
    const e = refusal(() => sevEsLaunchDigest({firmware: {file: '/srv/plain.fd', bytes: image}, vcpus: 1, cpuSignature: 0x800f12, form: 'legacy'}))
    expect(e.message).toMatch(/^\/srv\/plain\.fd: no OVMF footer table \(GUID 96b582de-1fb2-45f7-baea-a366c55a082d is not 48 bytes before the end of the file\), which an SEV-ES launch digest needs/)
    expect(e.hint).toMatch(/--firmware/)
    expect(sevLaunchDigest({firmware: {file: '/srv/plain.fd', bytes: image}}).toString('hex')).toBe(createHash('sha256').update(image).digest('hex'))
  })

  it('a table without the SEV-ES reset block: refused naming the file, the GUID and what the table holds, with --mode sev as a way out', () => {
    const image = syntheticOvmf({entries: [{guid: GUIDS.sevSecret, data: Buffer.alloc(8)}]})
    const e = refusal(() => sevEsResetAddress(image, '/srv/no-es.fd'))
    expect(e.message).toBe('/srv/no-es.fd: the firmware\'s footer table has no SEV-ES reset block (GUID 00f771de-1a7e-4fcb-890e-68c77e2fb44e), so QEMU cannot start it under SEV-ES')
    expect(e.details).toEqual([`its footer table holds: ${GUIDS.sevSecret}`])
    expect(e.hint).toMatch(/--mode sev/)
  })

  it('a reset block giving address 0 is refused, as QEMU refuses it', () => {
    const image = syntheticOvmf({entries: [{guid: GUIDS.sevEsResetBlock, data: u32(0)}]})
    expect(refusal(() => sevEsResetAddress(image, 'zero.fd')).message).toMatch(/^zero\.fd: a damaged OVMF footer table: its SEV-ES reset block gives address 0/)
  })

  it('damaged tables are refused naming the file and the offset: an entry shorter than its own header, an entry past the table, a table longer than the image', () => {
    const size = 64 * 1024
    const short = syntheticOvmf({size, entries: [{guid: GUIDS.sevEsResetBlock, data: u32(0x80b004), length: 4}]})
    // the entry's header sits right before the footer's own 18 bytes, which end 32 bytes before the image's end
    expect(refusal(() => parseOvmfFooterTable(short, 'short.fd')).message).toBe(
      `short.fd: a damaged OVMF footer table: the entry ${GUIDS.sevEsResetBlock} at offset ${size - 32 - 18 - 18} says it is 4 bytes long, which does not fit the table (offsets ${size - 32 - 18 - 22} to ${size - 32})`,
    )
    const long = syntheticOvmf({size, entries: [{guid: GUIDS.sevEsResetBlock, data: u32(0x80b004), length: 200}]})
    expect(refusal(() => parseOvmfFooterTable(long, 'long.fd')).message).toMatch(/^long\.fd: a damaged OVMF footer table: the entry 00f771de-.* says it is 200 bytes long/)
    const huge = syntheticOvmf({size: 4096, entries: [], tableLength: 0xffff})
    expect(refusal(() => parseOvmfFooterTable(huge, 'huge.fd')).message).toBe(
      'huge.fd: a damaged OVMF footer table: its footer table says it is 65535 bytes long, which does not fit the 4096-byte image (offset 4046)',
    )
  })
})

describe('the kernel hashes area (measured direct boot)', () => {
  it('absent, or with base 0 as in every OvmfPkgX64 build: refused naming the file and the AmdSev build to use', () => {
    const none = syntheticOvmf({entries: [{guid: GUIDS.sevEsResetBlock, data: u32(0x80b004)}]})
    const absent = refusal(() => sevHashesTableArea(none, '/usr/share/OVMF/x.fd'))
    expect(absent.message).toMatch(/^\/usr\/share\/OVMF\/x\.fd: the firmware reserves no SEV hashes table \(GUID 7255371f-3a3b-4b04-927b-1da6efa8d454 is absent\)/)
    expect(absent.hint).toMatch(/OvmfPkg\/AmdSev\/AmdSevX64\.dsc/)
    const zero = syntheticOvmf({entries: [{guid: GUIDS.sevHashTable, data: Buffer.alloc(8)}]})
    expect(refusal(() => sevHashesTableArea(zero, 'z.fd')).message).toMatch(/GUID 7255371f-3a3b-4b04-927b-1da6efa8d454 gives base 0/)
  })

  it('an area smaller than the 176-byte table QEMU writes is refused, as QEMU refuses the launch', () => {
    const small = syntheticOvmf({entries: [{guid: GUIDS.sevHashTable, data: Buffer.concat([u32(0x810c00), u32(175)])}]})
    const e = refusal(() => sevLaunchDigest({firmware: {file: 'small.fd', bytes: small}, hashesTable: Buffer.alloc(176)}))
    expect(e.message).toBe('small.fd: the firmware\'s SEV hashes table area is 175 bytes, smaller than the 176-byte table QEMU writes there, so QEMU refuses the launch')
  })
})

describe('reading the SEV metadata (SEV-SNP)', () => {
  const withMetadata = (m: Partial<SevMetadata>) => syntheticOvmf({...SNP_AMDSEV_LIKE, sevMetadata: {...SNP_AMDSEV_LIKE.sevMetadata, ...m}})

  it('lists every section in the image\'s order, with its base, size and type', () => {
    expect(sevMetadataSections(withMetadata({}), 'fw.fd')).toEqual([
      {gpa: 0x800000, size: 0x9000, type: 'snp-sec-mem'},
      {gpa: 0x80a000, size: 0x3000, type: 'snp-sec-mem'},
      {gpa: 0x80d000, size: 0x1000, type: 'snp-secrets'},
      {gpa: 0x80e000, size: 0x1000, type: 'cpuid'},
      {gpa: 0x80f000, size: 0x1000, type: 'snp-kernel-hashes'},
      {gpa: 0x810000, size: 0x1000, type: 'svsm-caa'},
      {gpa: 0x811000, size: 0xf000, type: 'snp-sec-mem'},
    ])
  })

  it('refuses, naming the file and what is wrong: no metadata, a wrong signature or version, an unknown type, a section not in whole pages, a secrets page of two pages, an offset outside the image', () => {
    const none = refusal(() => sevMetadataSections(syntheticOvmf({entries: AMDSEV_LIKE_ENTRIES}), 'fw.fd'))
    expect(none.message).toMatch(/^fw\.fd: the firmware has no SEV metadata \(footer GUID dc886566-984a-4798-a75e-5585a7bf67cc\)/)
    expect(none.details[0]).toBe(`its footer table holds: ${GUIDS.sevEsResetBlock}, ${GUIDS.sevSecret}, ${GUIDS.sevHashTable}`)
    const damaged = (m: Partial<SevMetadata>) => refusal(() => sevMetadataSections(withMetadata(m), 'fw.fd')).message
    expect(damaged({signature: 'XSEV'})).toMatch(/^fw\.fd: a damaged OVMF footer table: the SEV metadata at offset 63488 starts with "XSEV", not the signature "ASEV"/)
    expect(damaged({version: 2})).toMatch(/is version 2; only version 1 is known/)
    expect(damaged({sections: [[0x800000, 0x1000, 7]]})).toMatch(/SEV metadata section 0 \(base 0x800000, 4096 bytes\) has type 7, which no VMM knows/)
    expect(damaged({sections: [[0x800800, 0x1000, 1]]})).toMatch(/is not whole pages/)
    expect(damaged({sections: [[0x80d000, 0x2000, 2]]})).toMatch(/the snp-secrets page, is not one page/)
    const outside = syntheticOvmf({entries: [{guid: GUIDS.sevMetadata, data: u32(0x20000)}, ...SNP_AMDSEV_LIKE.entries]})
    expect(refusal(() => sevMetadataSections(outside, 'fw.fd')).message).toMatch(/its SEV metadata entry points 131072 bytes before the end of the 65536-byte image/)
  })
})
