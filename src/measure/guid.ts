import {BugError} from '../errors.js'

/**
 * An EFI GUID in the byte order firmware stores it (the first three fields little-endian, the rest
 * as written), which is how OVMF's footer table and QEMU's SEV hashes table hold them.
 */
export function guidBytes(guid: string): Buffer {
  const m = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i.exec(guid)
  if (!m) throw new BugError(`not a GUID: ${guid}`)
  const b = Buffer.alloc(16)
  b.writeUInt32LE(Number.parseInt(m[1], 16), 0)
  b.writeUInt16LE(Number.parseInt(m[2], 16), 4)
  b.writeUInt16LE(Number.parseInt(m[3], 16), 6)
  Buffer.from(m[4] + m[5], 'hex').copy(b, 8)
  return b
}

/** The GUID string of 16 stored bytes (the inverse of guidBytes). */
export function guidString(bytes: Buffer): string {
  if (bytes.length !== 16) throw new BugError(`a GUID is 16 bytes, not ${bytes.length}`)
  const hex = (n: number, width: number) => n.toString(16).padStart(width, '0')
  const rest = bytes.subarray(8).toString('hex')
  return `${hex(bytes.readUInt32LE(0), 8)}-${hex(bytes.readUInt16LE(4), 4)}-${hex(bytes.readUInt16LE(6), 4)}-${rest.slice(0, 4)}-${rest.slice(4)}`
}
