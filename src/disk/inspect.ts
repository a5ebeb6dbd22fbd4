import {open, stat, type FileHandle} from 'node:fs/promises'

import {InputError} from '../errors.js'

/**
 * What is this image, and is it safe to hand to qemu-img? (issue #17; the class of OpenStack's
 * CVE-2022-47951 and CVE-2024-32498.) A qcow2 or vmdk header can name other files by path (a
 * backing file, an external data file, a vmdk extent or parent), and qemu-img opens them: a
 * hostile base would read a file of the build host into the release. So the header is read here,
 * with our own code, before any tool opens the image, and only the forms a cloud image actually
 * uses are let through, each as one self-contained file:
 *   qcow2 v2/v3, not encrypted, with no backing file, no external data file, no unknown incompatible feature;
 *   vmdk monolithicSparse or streamOptimized: one hosted sparse extent (the file itself), its descriptor
 *   embedded, no parent;
 *   raw: bytes that are no other image format's header.
 * The declared format must be what the bytes say. Everything else is refused (InputError, exit 2),
 * naming the field and what it refers to. Layouts: QEMU's docs/interop/qcow2.txt, VMware's
 * "Virtual Disk Format 5.0" (sparse extent header, descriptor file). Where QEMU's parser reads the
 * bytes otherwise than the format's documents (issue #29: names found by substring, comments
 * included; capacity 0), the file is judged as QEMU reads it: docs/disk-image-bases.md lists the rules.
 */

export const DISK_FORMATS = ['qcow2', 'raw', 'vmdk'] as const
export type DiskFormat = (typeof DISK_FORMATS)[number]

export function isDiskFormat(format: string): format is DiskFormat {
  return (DISK_FORMATS as readonly string[]).includes(format)
}

export interface ImageInspection {
  format: DiskFormat
  /** e.g. 'qcow2 v3', 'vmdk streamOptimized', 'raw' */
  variant: string
  /** bytes of the disk the image holds (what a conversion to raw writes, at most) */
  virtualSize: number
}

const SECTOR = 512
/** the header bytes read to identify a file: every magic below lies in them */
const HEAD_BYTES = 4096

/** Another image format's signature, found where a raw disk (or the declared format) was expected. */
interface Signature {
  name: string
  /** where it was found, for the message */
  where: string
}

const QCOW_MAGIC = Buffer.from('QFI\xfb', 'latin1')
const VMDK_SPARSE_MAGIC = Buffer.from('KDMV', 'latin1')
const VMDK_COWD_MAGIC = Buffer.from('COWD', 'latin1')

/** Signatures at the start of the file, for formats other than qcow2 and vmdk (those are read in full below). */
const HEAD_SIGNATURES: Array<{name: string; offset: number; magic: Buffer}> = [
  {name: 'qed', offset: 0, magic: Buffer.from('QED\0', 'latin1')},
  {name: 'vhdx', offset: 0, magic: Buffer.from('vhdxfile', 'latin1')},
  {name: 'vpc (vhd)', offset: 0, magic: Buffer.from('conectix', 'latin1')},
  {name: 'vdi', offset: 64, magic: Buffer.from([0x7f, 0x10, 0xda, 0xbe])},
  {name: 'luks', offset: 0, magic: Buffer.from('LUKS\xba\xbe', 'latin1')},
  {name: 'parallels', offset: 0, magic: Buffer.from('WithoutFreeSpace', 'latin1')},
  {name: 'parallels', offset: 0, magic: Buffer.from('WithouFreSpacExt', 'latin1')},
  {name: 'bochs', offset: 0, magic: Buffer.from('Bochs Virtual HD Image', 'latin1')},
  {name: 'cloop', offset: 0, magic: Buffer.from('#!/bin/sh\n#V2.0 Format\n', 'latin1')},
]
/** Signatures in the last sector (footers). */
const TAIL_SIGNATURES: Array<{name: string; magic: Buffer}> = [
  {name: 'vpc (vhd)', magic: Buffer.from('conectix', 'latin1')},
  {name: 'dmg', magic: Buffer.from('koly', 'latin1')},
]

/** What the bytes say the file is: one of the disk formats, or another format's signature. */
type Identified = {format: 'qcow2'} | {format: 'vmdk'; kind: 'sparse' | 'cowd' | 'descriptor'} | {format: 'raw'} | {format: 'other'; signature: Signature}

function identify(head: Buffer, tail: Buffer): Identified {
  if (head.subarray(0, 4).equals(QCOW_MAGIC)) return {format: 'qcow2'}
  if (head.subarray(0, 4).equals(VMDK_SPARSE_MAGIC)) return {format: 'vmdk', kind: 'sparse'}
  if (head.subarray(0, 4).equals(VMDK_COWD_MAGIC)) return {format: 'vmdk', kind: 'cowd'}
  if (looksLikeVmdkDescriptor(head)) return {format: 'vmdk', kind: 'descriptor'}
  for (const s of HEAD_SIGNATURES) {
    if (head.subarray(s.offset, s.offset + s.magic.length).equals(s.magic)) return {format: 'other', signature: {name: s.name, where: `'${printable(s.magic)}' at byte ${s.offset}`}}
  }
  for (const s of TAIL_SIGNATURES) {
    if (tail.subarray(0, s.magic.length).equals(s.magic)) return {format: 'other', signature: {name: s.name, where: `'${printable(s.magic)}' in the last 512 bytes`}}
  }
  return {format: 'raw'}
}

/** A text vmdk descriptor: what QEMU's probe takes for one (a "version=" line and a createType or a "Disk DescriptorFile" comment). */
function looksLikeVmdkDescriptor(head: Buffer): boolean {
  const text = head.toString('latin1')
  return /^\s*#\s*Disk DescriptorFile/im.test(text) || (/^\s*version\s*=/im.test(text) && /^\s*createType\s*=/im.test(text))
}

/** Bytes as text fit for a message: printable ASCII kept, the rest as \xNN, long names cut. */
function printable(b: Buffer, max = 200): string {
  let s = ''
  for (const c of b.subarray(0, max)) s += c >= 0x20 && c < 0x7f && c !== 0x27 && c !== 0x5c ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`
  return b.length > max ? `${s}...` : s
}

/** The refusal of an image that may be valid but is not one of the forms cvm-image reads. */
function unsupported(file: string, declared: DiskFormat, found: string, why: string): InputError {
  return new InputError(`the ${declared} base ${file}: ${found}; ${why}`, {
    details: [
      'cvm-image reads a disk image base as the one file given and nothing else: before any tool opens it, it reads the header itself and accepts only qcow2 v2/v3 with no backing file, external data file or encryption, vmdk monolithicSparse or streamOptimized (one embedded extent, no parent), and raw. The image may be valid, but this form is not supported.',
    ],
    hint: `if you trust the image and every file it refers to, make it one self-contained raw disk where those files are: \`qemu-img convert -O raw ${file} base.raw\`, then build with \`base.format: raw\` (--base-file base.raw --base-sha256 <its sha256>)`,
  })
}

/** The refusal of a header that is damaged or cut short: not a form question, a bad file. */
function damaged(file: string, declared: DiskFormat, found: string, why: string): InputError {
  return new InputError(`the ${declared} base ${file}: ${found}; ${why}`, {
    hint: `check that it is a ${declared} disk image and that the recipe's base.format says what it is; if it was downloaded, download it again`,
  })
}

const OPENS = 'which the converter would open and copy into the image'
const REFERS = `it refers to another file, ${OPENS}`

async function readAt(fh: FileHandle, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length)
  const {bytesRead} = await fh.read(buf, 0, length, offset)
  return buf.subarray(0, bytesRead)
}

/** A u64 as a number, or undefined when it does not fit in one exactly. */
function u64(v: bigint): number | undefined {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined
}

/**
 * Reads the image's header and answers whether it is the declared format in a form cvm-image
 * accepts, with its virtual size. Throws InputError (exit 2) naming what was found otherwise (and
 * the file as `shownAs`). Opens nothing but `path`, and only to read.
 */
export async function inspectDiskImage(path: string, declared: DiskFormat, shownAs = path): Promise<ImageInspection> {
  // messages name the file as the user knows it (their --base-file), not the cache's copy read here
  const file = shownAs
  const st = await stat(path).catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`the ${declared} base ${file} cannot be read: ${e.code ?? e.message}`, {cause: e})
  })
  if (!st.isFile()) throw new InputError(`the ${declared} base ${file}: it is not a regular file; a base is read from a file, not a device, pipe or directory`, {hint: 'give the disk image file itself (--base-file), or make one: `qemu-img convert -O raw <device> base.raw`'})
  const fh = await open(path, 'r')
  try {
    const head = await readAt(fh, 0, HEAD_BYTES)
    const tail = st.size >= SECTOR ? await readAt(fh, st.size - SECTOR, SECTOR) : Buffer.alloc(0)
    const id = identify(head, tail)
    const says = id.format === 'other' ? `a ${id.signature.name} image (${id.signature.where})` : id.format === 'vmdk' ? `a vmdk ${id.kind === 'descriptor' ? 'descriptor file' : id.kind === 'cowd' ? "ESX sparse extent ('COWD')" : 'sparse extent'}` : `a ${id.format} image`
    if (id.format !== declared) {
      if (declared === 'raw' || id.format !== 'raw') {
        throw unsupported(file, declared, `its bytes are ${says}, not ${declared}`, 'the declared format must be what the header says, so that no tool reads it as another format (a header that is not raw may name other files)')
      }
      throw damaged(file, declared, `its bytes are no ${declared} header ('${printable(head.subarray(0, 8))}' at byte 0)`, 'a damaged file, or base.format does not say what it is')
    }
    switch (id.format) {
      case 'qcow2':
        return await inspectQcow2(fh, file, st.size, head)
      case 'vmdk':
        if (id.kind === 'descriptor') throw unsupported(file, declared, `it is a vmdk descriptor file (${descriptorSummary(head.toString('latin1'))})`, `its extents are other files, ${OPENS}`)
        if (id.kind === 'cowd') throw unsupported(file, declared, "it is an ESX (vmfsSparse, 'COWD') extent", 'that form belongs to a multi-file vmdk whose descriptor names its files')
        return await inspectVmdkSparse(fh, file, st.size, head)
      default:
        return {format: 'raw', variant: 'raw', virtualSize: st.size}
    }
  } finally {
    await fh.close()
  }
}

function descriptorSummary(text: string): string {
  const d = parseDescriptor(text)
  const parts = [`createType '${printable(Buffer.from(d.values.get('createtype') ?? '?'))}'`]
  for (const e of d.extents) parts.push(`extent '${printable(Buffer.from(e.line))}'`)
  return parts.join(', ')
}

// qcow2: all numbers big-endian (docs/interop/qcow2.txt "Header")
const QCOW2_INCOMPAT_DIRTY = 0n
const QCOW2_INCOMPAT_CORRUPT = 1n
const QCOW2_INCOMPAT_DATA_FILE = 2n
const QCOW2_INCOMPAT_COMPRESSION = 3n
const QCOW2_INCOMPAT_EXTL2 = 4n
const QCOW2_INCOMPAT_KNOWN = [QCOW2_INCOMPAT_DIRTY, QCOW2_INCOMPAT_CORRUPT, QCOW2_INCOMPAT_DATA_FILE, QCOW2_INCOMPAT_COMPRESSION, QCOW2_INCOMPAT_EXTL2].reduce((m, b) => m | (1n << b), 0n)
const QCOW2_EXT_END = 0x00000000
const QCOW2_EXT_CRYPTO = 0x0537be77
const QCOW2_EXT_DATA_FILE = 0x44415441
/** QEMU's own limit on a backing file name */
const QCOW2_MAX_NAME = 1023

async function inspectQcow2(fh: FileHandle, file: string, size: number, head: Buffer): Promise<ImageInspection> {
  const bad = (found: string, why: string) => unsupported(file, 'qcow2', found, why)
  const broken = (found: string, why: string) => damaged(file, 'qcow2', found, why)
  if (head.length < 72) throw broken('its qcow2 header is cut short', 'the file is too small to be a qcow2 image')
  const version = head.readUInt32BE(4)
  if (version !== 2 && version !== 3) throw bad(`qcow2 header version ${version}`, 'only qcow2 versions 2 and 3 are read')
  const backingOffset = head.readBigUInt64BE(8)
  const backingSize = head.readUInt32BE(16)
  const clusterBits = head.readUInt32BE(20)
  const virtualSize = u64(head.readBigUInt64BE(24))
  const cryptMethod = head.readUInt32BE(32)
  if (clusterBits < 9 || clusterBits > 21) throw broken(`qcow2 cluster_bits ${clusterBits}`, 'a valid qcow2 has clusters of 512 bytes to 2 MiB')
  const clusterSize = 2 ** clusterBits
  if (virtualSize === undefined) throw bad(`qcow2 virtual size ${head.readBigUInt64BE(24)} bytes`, 'no disk is that large')
  if (backingOffset !== 0n) {
    const at = u64(backingOffset)
    const name = at !== undefined && backingSize <= QCOW2_MAX_NAME ? await readAt(fh, at, backingSize) : Buffer.alloc(0)
    throw bad(`qcow2 backing file '${printable(name)}' (header field backing_file_offset ${backingOffset}, ${backingSize} bytes)`, REFERS)
  }
  if (cryptMethod !== 0) throw bad(`qcow2 encryption (header field crypt_method ${cryptMethod}: ${cryptMethod === 1 ? 'AES' : cryptMethod === 2 ? 'LUKS' : 'unknown'})`, 'an encrypted image needs a key cvm-image does not take')

  let incompatible = 0n
  let extensionsAt = 72
  let headerLength = 72
  if (version === 3) {
    if (head.length < 104) throw broken('its qcow2 v3 header is cut short', 'the file is too small to be a qcow2 image')
    incompatible = head.readBigUInt64BE(72)
    headerLength = head.readUInt32BE(100)
    if (headerLength < 104 || headerLength % 8 !== 0 || headerLength > clusterSize) throw broken(`qcow2 header_length ${headerLength}`, 'a valid qcow2 v3 header is 104 bytes or more, a multiple of 8, within the first cluster')
    extensionsAt = headerLength
  }
  const unknown = incompatible & ~QCOW2_INCOMPAT_KNOWN
  if (unknown !== 0n) throw bad(`qcow2 unknown incompatible feature bits 0x${unknown.toString(16)} (header field incompatible_features 0x${incompatible.toString(16)})`, 'an image with features cvm-image does not know may be read differently from what this check saw')
  if (incompatible & (1n << QCOW2_INCOMPAT_CORRUPT)) throw bad('qcow2 marked corrupt (incompatible feature bit 1)', 'repair it with `qemu-img check -r all` where you trust it')

  // header extensions, up to the end marker, within the first cluster
  const cluster = await readAt(fh, 0, Math.min(clusterSize, size))
  let dataFile: Buffer | undefined
  for (let off = extensionsAt, n = 0; ; n++) {
    if (off + 8 > cluster.length || n > 1000) throw broken(`qcow2 header extensions run past the first cluster (at byte ${off})`, 'the header is malformed')
    const type = cluster.readUInt32BE(off)
    const length = cluster.readUInt32BE(off + 4)
    if (type === QCOW2_EXT_END) break
    const data = off + 8
    if (data + length > cluster.length) throw broken(`qcow2 header extension 0x${type.toString(16)} of ${length} bytes runs past the first cluster`, 'the header is malformed')
    const body = cluster.subarray(data, data + length)
    if (type === QCOW2_EXT_DATA_FILE) dataFile = body
    if (type === QCOW2_EXT_CRYPTO) throw bad('qcow2 encryption (full disk encryption header extension 0x0537be77)', 'an encrypted image needs a key cvm-image does not take')
    // others (backing format 0xe2792aca, feature names, bitmaps) name no file; with no backing file the format is unused
    off = data + Math.ceil(length / 8) * 8
  }
  if (dataFile !== undefined) throw bad(`qcow2 external data file '${printable(dataFile)}' (header extension 0x44415441)`, REFERS)
  if (incompatible & (1n << QCOW2_INCOMPAT_DATA_FILE)) throw bad('qcow2 external data file (incompatible feature bit 2, its name left to the command line)', REFERS)
  return {format: 'qcow2', variant: `qcow2 v${version}`, virtualSize}
}

// vmdk hosted sparse extent header: little-endian (VMware "Virtual Disk Format 5.0", SparseExtentHeader)
const GD_AT_END = 0xffffffffffffffffn
const VMDK_ACCEPTED_TYPES = ['monolithicSparse', 'streamOptimized']
/** a descriptor larger than this is not the few lines a real one holds */
const MAX_DESCRIPTOR_SECTORS = 2048

interface Extent {
  line: string
  type: string
  name?: string
}

/** key = value lines (keys lower-cased) and extent lines ("RW 2048 SPARSE \"x.vmdk\"") of a descriptor. */
function parseDescriptor(text: string): {values: Map<string, string>; extents: Extent[]} {
  const values = new Map<string, string>()
  const extents: Extent[] = []
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/\0+$/, '').trim()
    if (!line || line.startsWith('#')) continue
    const extent = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\S+)(?:\s+"([^"]*)")?/i.exec(line)
    if (extent) {
      extents.push({line, type: extent[3].toUpperCase(), name: extent[4]})
      continue
    }
    const kv = /^([A-Za-z0-9_.]+)\s*=\s*"?([^"]*)"?\s*$/.exec(line)
    if (kv) values.set(kv[1].toLowerCase(), kv[2])
  }
  return {values, extents}
}

/** Where and how QEMU reads the descriptor of a hosted sparse file for its parent and CIDs: vmdk_open sets desc_offset 0x200 and vmdk_parent_open/vmdk_read_cid read DESC_SIZE (20 sectors) from there, whatever the header's descOffset says. */
const QEMU_DESCRIPTOR_AT = SECTOR
const QEMU_DESCRIPTOR_BYTES = 20 * SECTOR

/** One place in the descriptor bytes where QEMU's substring search finds a name, and what it takes as its value. */
interface Found {
  /** byte offset in the file */
  at: number
  value: string
  /** on a "#" line, which a line reader skips and QEMU does not */
  comment: boolean
}

/**
 * Every occurrence of `name` in `bytes` (read from file offset `base`), each with the value QEMU
 * would take there: vmdk_parse_description and vmdk_parent_open skip the name and the two characters
 * after it (`="`) and read to the next '"'. QEMU stops at the first one and at a NUL; we look at all,
 * NULs or not, so no copy of a name hides behind another.
 */
function substringValues(bytes: Buffer, base: number, name: string): Found[] {
  const found: Found[] = []
  for (let i = bytes.indexOf(name, 0, 'latin1'); i >= 0; i = bytes.indexOf(name, i + 1, 'latin1')) {
    const from = i + name.length + 2
    const quote = bytes.indexOf(0x22, from)
    const lineStart = bytes.lastIndexOf(0x0a, i) + 1
    found.push({at: base + i, value: bytes.subarray(from, quote < 0 ? Math.min(from + 200, bytes.length) : quote).toString('latin1'), comment: bytes.subarray(lineStart, i).toString('latin1').trimStart().startsWith('#')})
  }
  return found
}

/** The hex number vmdk_read_cid reads after "parentCID" and one more character (sscanf %x: blanks, an optional 0x, hex digits). */
function cidAt(bytes: Buffer, i: number): number | undefined {
  const m = /^\s*(?:0x)?([0-9a-f]+)/i.exec(bytes.subarray(i + 'parentCID'.length + 1, i + 'parentCID'.length + 40).toString('latin1'))
  return m ? Number.parseInt(m[1].slice(-8), 16) : undefined
}

function foundWhere(f: Found): string {
  return `at byte ${f.at}${f.comment ? ', on a # comment line, which QEMU reads all the same' : ''}`
}

async function inspectVmdkSparse(fh: FileHandle, file: string, size: number, head: Buffer): Promise<ImageInspection> {
  const bad = (found: string, why: string) => unsupported(file, 'vmdk', found, why)
  const broken = (found: string, why: string) => damaged(file, 'vmdk', found, why)
  if (head.length < SECTOR) throw broken('its vmdk sparse header is cut short', 'the file is too small to be a vmdk image')
  const version = head.readUInt32LE(4)
  if (version < 1 || version > 3) throw bad(`vmdk sparse header version ${version}`, 'only versions 1 to 3 are read')
  let capacity = head.readBigUInt64LE(12)
  const descriptorOffset = u64(head.readBigUInt64LE(28))
  const descriptorSize = u64(head.readBigUInt64LE(36))
  if (!descriptorOffset || !descriptorSize) throw bad('a vmdk sparse extent with no embedded descriptor', 'such an extent is one part of a multi-file vmdk, whose descriptor names its files')
  if (descriptorSize > MAX_DESCRIPTOR_SECTORS || (descriptorOffset + descriptorSize) * SECTOR > size) throw broken(`vmdk descriptor of ${descriptorSize} sectors at sector ${descriptorOffset}`, 'it lies outside the file or is larger than any real descriptor')
  // QEMU's vmdk_open_vmdk4: a header capacity of 0 with a descriptor makes the file a descriptor file, its extents opened by name
  if (capacity === 0n) throw bad(`vmdk sparse header with capacity 0 and an embedded descriptor at sector ${descriptorOffset}`, `QEMU reads such a file as a descriptor file, whose extents are other files, ${OPENS}`)
  if (head.readBigUInt64LE(56) === GD_AT_END) {
    // QEMU's vmdk_open_vmdk4: the footer (before the end-of-stream marker) takes the header's place
    const footer = size >= 3 * SECTOR ? await readAt(fh, size - 2 * SECTOR, SECTOR) : Buffer.alloc(0)
    if (!footer.subarray(0, 4).equals(VMDK_SPARSE_MAGIC)) throw broken('a vmdk grain directory at the end (gdOffset all ones) with no footer', 'a streamOptimized file ends with a footer header')
    capacity = footer.readBigUInt64LE(12)
  }
  const declared = await readAt(fh, descriptorOffset * SECTOR, descriptorSize * SECTOR)
  const qemuReads = await readAt(fh, QEMU_DESCRIPTOR_AT, QEMU_DESCRIPTOR_BYTES)
  const {values, extents} = parseDescriptor(declared.toString('latin1'))
  // the two places QEMU looks, each with its file offset; a name found in both is reported once
  const search = (name: string) => {
    const all = [...substringValues(declared, descriptorOffset * SECTOR, name), ...substringValues(qemuReads, QEMU_DESCRIPTOR_AT, name)]
    return all.filter((f, i) => all.findIndex((g) => g.at === f.at) === i).sort((a, b) => a.at - b.at)
  }
  // QEMU's vmdk_parent_open: any "parentFileNameHint" in its descriptor bytes becomes the backing file
  const parent = search('parentFileNameHint')[0]
  if (parent) throw bad(`vmdk parent file '${printable(Buffer.from(parent.value, 'latin1'))}' (descriptor field parentFileNameHint ${foundWhere(parent)})`, REFERS)
  // QEMU's vmdk_read_cid: the first "parentCID" substring; a real parent id makes the file a delta disk of another
  for (const region of [{bytes: declared, base: descriptorOffset * SECTOR}, {bytes: qemuReads, base: QEMU_DESCRIPTOR_AT}]) {
    for (const f of substringValues(region.bytes, region.base, 'parentCID')) {
      const cid = cidAt(region.bytes, f.at - region.base)
      if (cid !== undefined && cid !== 0xffffffff) throw bad(`vmdk parentCID ${cid.toString(16).padStart(8, '0')} (${foundWhere(f)}: a delta disk of another vmdk)`, REFERS)
    }
  }
  const createType = values.get('createtype')
  if (!createType || !VMDK_ACCEPTED_TYPES.includes(createType)) {
    throw bad(`vmdk createType '${printable(Buffer.from(createType ?? '(none)'))}' in the embedded descriptor`, `only ${VMDK_ACCEPTED_TYPES.join(' and ')} are single self-contained files`)
  }
  // QEMU's vmdk_parse_description takes the first "createType" substring: every one must say what the lines say
  const otherType = substringValues(declared, descriptorOffset * SECTOR, 'createType').find((f) => f.value !== createType)
  if (otherType) throw bad(`vmdk createType '${printable(Buffer.from(otherType.value, 'latin1'))}' ${foundWhere(otherType)}, beside createType '${createType}'`, 'QEMU takes the first createType it finds, comments included, so the descriptor must name one type only')
  // the one extent of a hosted sparse file is the file itself; its name is the one it was made under
  const own = extents.filter((e) => e.type === 'SPARSE' && e.name !== undefined && isBareName(e.name))
  const other = extents.find((e) => !own.includes(e))
  if (other) throw bad(`vmdk extent '${printable(Buffer.from(other.line))}' in the embedded descriptor`, `${REFERS}: a ${createType} image has one SPARSE extent, itself`)
  if (own.length !== 1) throw bad(`vmdk embedded descriptor with ${own.length} extents`, `a ${createType} image has one SPARSE extent, itself`)
  const virtualSize = u64(capacity * BigInt(SECTOR))
  if (virtualSize === undefined) throw bad(`vmdk capacity ${capacity} sectors`, 'no disk is that large')
  return {format: 'vmdk', variant: `vmdk ${createType}`, virtualSize}
}

/** A file name with no directory, protocol or json: part: how a single-file vmdk names itself. */
function isBareName(name: string): boolean {
  return name.length > 0 && !/[/\\:]/.test(name) && name !== '.' && name !== '..'
}
