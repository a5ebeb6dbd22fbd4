import {createHash} from 'node:crypto'

/**
 * Identifiers that are random in a normal build (disk and partition GUIDs, filesystem UUIDs, the
 * ext4 directory hash seed, the FAT serial) derived from the stage's input hash instead, so the
 * same inputs give the same bytes while different builds still get different ids.
 */
export interface DiskIds {
  diskGuid: string
  espPartUuid: string
  rootPartUuid: string
  rootFsUuid: string
  rootHashSeed: string
  /** 8 hex digits, mkfs.vfat -i */
  espSerial: string
}

function digest(seed: string, purpose: string): Buffer {
  return createHash('sha256').update(`cvm-image/${purpose}\0${seed}`).digest()
}

/** An RFC 4122 version-4-shaped UUID from 16 derived bytes. */
export function derivedUuid(seed: string, purpose: string): string {
  const b = digest(seed, purpose).subarray(0, 16)
  b[6] = (b[6] & 0x0f) | 0x40
  b[8] = (b[8] & 0x3f) | 0x80
  const h = b.toString('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

export function diskIds(seed: string): DiskIds {
  return {
    diskGuid: derivedUuid(seed, 'disk'),
    espPartUuid: derivedUuid(seed, 'esp-partition'),
    rootPartUuid: derivedUuid(seed, 'root-partition'),
    rootFsUuid: derivedUuid(seed, 'root-filesystem'),
    rootHashSeed: derivedUuid(seed, 'root-hash-seed'),
    espSerial: digest(seed, 'esp-serial').subarray(0, 4).toString('hex'),
  }
}
