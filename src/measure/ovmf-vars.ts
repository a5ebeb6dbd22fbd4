import {X509Certificate} from 'node:crypto'

import {InputError} from '../errors.js'
import {OVMF_VARS} from '../validate/ovmf-files.js'
import {guidBytes, guidString} from './guid.js'

/**
 * An OVMF variable store file (OVMF_VARS*.fd, the second pflash), read as edk2 lays it out
 * (MdePkg/Include/Pi/PiFirmwareVolume.h, MdeModulePkg/Include/Guid/VariableFormat.h): a firmware
 * volume header, a variable store header, then the variables, each a header, its UCS-2 name and
 * its data, the next one 4-byte aligned. A variable written again leaves the old copy behind,
 * marked deleted; the live copy is the last one in the added state. docs/pcr-measurements.md.
 */

export interface EfiVariable {
  name: string
  /** the vendor GUID, lower case */
  guid: string
  attributes: number
  data: Buffer
}

export const EFI_GLOBAL_VARIABLE = '8be4df61-93ca-11d2-aa0d-00e098032b8c'
export const EFI_IMAGE_SECURITY_DATABASE = 'd719b2cb-3d3a-4596-a3bc-dad00e67656f'
/** gEfiAuthenticatedVariableGuid: the store's format (time-based authenticated variables, as Secure Boot needs) */
const AUTHENTICATED_STORE = 'aaf32c78-947b-439a-a180-2e144ec37792'
const FV_SIGNATURE = '_FVH'
const VARIABLE_START_ID = 0x55aa
/** VAR_ADDED, and VAR_ADDED with VAR_IN_DELETED_TRANSITION cleared: the two states of a live variable */
const LIVE_STATES = new Set([0x3f, 0x3e])
/** AUTHENTICATED_VARIABLE_HEADER: StartId, State, Reserved, Attributes, MonotonicCount, TimeStamp, PubKeyIndex, NameSize, DataSize, VendorGuid */
const AUTH_HEADER_SIZE = 60

/** A file whose layout is not the OVMF variable store this reader knows (another firmware's, or no store): nothing can be read from it, which is not an error in it. */
export class UnknownVariableStoreError extends InputError {}

/** The live variables of an OVMF variable store, in store order. */
export function readVariableStore(fd: Buffer, what = 'the variable store'): EfiVariable[] {
  return walkStore(fd, what).live
}

/**
 * Reads the store's headers and walks its variables: the live ones (the later copy of a name wins)
 * and where the free space begins, after the last variable.
 */
function walkStore(fd: Buffer, what: string): {live: EfiVariable[]; free: number; end: number} {
  const hint = `give an OVMF_VARS file (e.g. ${OVMF_VARS}), the second pflash QEMU boots with`
  const bad = (why: string) => new UnknownVariableStoreError(`${what} is not an OVMF variable store: ${why}`, {hint})
  if (fd.length < 64 || fd.toString('latin1', 40, 44) !== FV_SIGNATURE) throw bad(`no firmware volume signature "${FV_SIGNATURE}" at byte 40`)
  const store = fd.readUInt16LE(48)
  if (store + 28 > fd.length) throw bad(`its firmware volume header length ${store} leaves no room for a variable store`)
  const format = guidString(fd.subarray(store, store + 16))
  if (format !== AUTHENTICATED_STORE) throw bad(`its variable store format is ${format}, not the authenticated one (${AUTHENTICATED_STORE})`)
  const end = Math.min(fd.length, store + fd.readUInt32LE(store + 16))
  const live = new Map<string, EfiVariable>()
  let o = store + 28
  while (o + AUTH_HEADER_SIZE <= end && fd.readUInt16LE(o) === VARIABLE_START_ID) {
    const state = fd[o + 2]
    const nameSize = fd.readUInt32LE(o + 36)
    const dataSize = fd.readUInt32LE(o + 40)
    const dataEnd = o + AUTH_HEADER_SIZE + nameSize + dataSize
    // a store of the known layout that is broken: an error, not an unknown store
    if (dataEnd > end) throw new InputError(`${what} is a damaged OVMF variable store: the variable at byte ${o} runs past the store's end`, {hint})
    if (LIVE_STATES.has(state)) {
      const guid = guidString(fd.subarray(o + 44, o + 60))
      const name = fd.toString('utf16le', o + AUTH_HEADER_SIZE, o + AUTH_HEADER_SIZE + nameSize).replace(/\0+$/, '')
      const key = `${guid}/${name}`
      live.delete(key) // the later copy is the live one: keep store order by it
      live.set(key, {name, guid, attributes: fd.readUInt32LE(o + 4), data: Buffer.from(fd.subarray(o + AUTH_HEADER_SIZE + nameSize, dataEnd))})
    }
    o = (dataEnd + 3) & ~3
  }
  return {live: [...live.values()], free: o, end}
}

/** A variable's data, or undefined when the store does not hold it. */
export function variable(vars: readonly EfiVariable[], name: string, guid: string): Buffer | undefined {
  return vars.find((v) => v.name === name && v.guid === guid)?.data
}

export const EFI_CERT_X509 = 'a5c059a1-94e4-4aa7-87b5-ab155c2bf072'
export const EFI_CERT_SHA256 = 'c1c41626-504c-4092-aca9-41f936934328'

/** One entry of a signature database (db, dbx, KEK): its list's type, and the EFI_SIGNATURE_DATA (owner GUID, then the certificate or hash). */
export interface SignatureEntry {
  type: string
  owner: string
  /** the EFI_SIGNATURE_DATA as stored: owner GUID and data */
  entry: Buffer
  /** the certificate's DER or the hash */
  data: Buffer
}

/** The entries of a signature database variable: a sequence of EFI_SIGNATURE_LISTs (UEFI 2.x, 32.4.1). */
export function signatureEntries(db: Buffer, what = 'the signature database'): SignatureEntry[] {
  const out: SignatureEntry[] = []
  let o = 0
  while (o + 28 <= db.length) {
    const type = guidString(db.subarray(o, o + 16))
    const listSize = db.readUInt32LE(o + 16)
    const headerSize = db.readUInt32LE(o + 20)
    const size = db.readUInt32LE(o + 24)
    if (listSize < 28 + headerSize || o + listSize > db.length || size < 16) throw new InputError(`${what}: a signature list at byte ${o} has inconsistent sizes (list ${listSize}, header ${headerSize}, entry ${size})`)
    for (let e = o + 28 + headerSize; e + size <= o + listSize; e += size) {
      const entry = db.subarray(e, e + size)
      out.push({type, owner: guidString(entry.subarray(0, 16)), entry, data: entry.subarray(16)})
    }
    o += listSize
  }
  return out
}

export const EFI_VARIABLE_NON_VOLATILE = 0x1
export const EFI_VARIABLE_BOOTSERVICE_ACCESS = 0x2
export const EFI_VARIABLE_RUNTIME_ACCESS = 0x4
export const EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS = 0x20
/** the attributes UEFI gives PK, KEK, db and dbx */
const KEY_ATTRIBUTES = EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS | EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS

/** An EFI_SIGNATURE_LIST of one X.509 certificate (UEFI 2.x, 32.4.1), owned by owner. */
export function x509SignatureList(certDer: Buffer, owner: string): Buffer {
  const head = Buffer.alloc(28)
  guidBytes(EFI_CERT_X509).copy(head, 0)
  head.writeUInt32LE(28 + 16 + certDer.length, 16)
  head.writeUInt32LE(0, 20)
  head.writeUInt32LE(16 + certDer.length, 24)
  return Buffer.concat([head, guidBytes(owner), certDer])
}

/** EFI_TIME of a moment, in UTC: Year, Month, Day, Hour, Minute, Second, Pad1, Nanosecond, TimeZone, Daylight, Pad2. */
function efiTime(t: Date): Buffer {
  const b = Buffer.alloc(16)
  b.writeUInt16LE(t.getUTCFullYear(), 0)
  b.writeUInt8(t.getUTCMonth() + 1, 2)
  b.writeUInt8(t.getUTCDate(), 3)
  b.writeUInt8(t.getUTCHours(), 4)
  b.writeUInt8(t.getUTCMinutes(), 5)
  b.writeUInt8(t.getUTCSeconds(), 6)
  return b
}

/**
 * A copy of a variable store with Secure Boot's keys enrolled: PK, KEK and db each hold the one
 * certificate (owner: the given GUID), written as live authenticated variables after the store's
 * last variable, with their time stamp at `time`. A store that holds keys already is refused. The
 * firmware (edk2's AuthVariableLib) finds PK at its start, so the platform is in user mode, adds
 * SecureBootEnable, and boots with Secure Boot on: only images db verifies start. The same inputs
 * give the same bytes. What virt-firmware's `virt-fw-vars --enroll-cert` does, which Debian 12 lacks.
 */
export function enrollSecureBootStore(plain: Buffer, certDer: Buffer, opts: {owner: string; time: Date; what?: string}): Buffer {
  const what = opts.what ?? 'the variable store'
  const {live: vars, free: o, end} = walkStore(plain, what)
  for (const name of ['PK', 'KEK', 'db']) {
    if (vars.some((v) => v.name === name)) throw new InputError(`${what} holds ${name} already: enroll into a store without Secure Boot keys`, {hint: `start from the plain store, ${OVMF_VARS}`})
  }
  const list = x509SignatureList(certDer, opts.owner)
  const records = ([['PK', EFI_GLOBAL_VARIABLE], ['KEK', EFI_GLOBAL_VARIABLE], ['db', EFI_IMAGE_SECURITY_DATABASE]] as const).map(([name, guid]) => {
    const nameBytes = Buffer.from(`${name}\0`, 'utf16le')
    const header = Buffer.alloc(AUTH_HEADER_SIZE)
    header.writeUInt16LE(VARIABLE_START_ID, 0)
    header.writeUInt8(0x3f, 2) // VAR_ADDED
    header.writeUInt32LE(KEY_ATTRIBUTES, 4)
    efiTime(opts.time).copy(header, 16)
    header.writeUInt32LE(nameBytes.length, 36)
    header.writeUInt32LE(list.length, 40)
    guidBytes(guid).copy(header, 44)
    const record = Buffer.concat([header, nameBytes, list])
    return Buffer.concat([record, Buffer.alloc(((record.length + 3) & ~3) - record.length, 0xff)])
  })
  const added = Buffer.concat(records)
  if (o + added.length > end) throw new InputError(`${what} has no room for the keys (${added.length} bytes; ${end - o} free)`)
  for (let i = o; i < o + added.length; i++) {
    if (plain[i] !== 0xff) throw new InputError(`${what} is not erased after its last variable (byte ${i}): it is no store OVMF wrote`)
  }
  const out = Buffer.from(plain)
  added.copy(out, o)
  return out
}

/** The owner GUID of the keys cvm-image enrolls (a fixed one of its own, so the store's bytes are the same every time). */
export const CVM_IMAGE_KEY_OWNER = 'ba754eaf-b2a7-4eb5-ae0c-ebc766d0204f'
/** The time stamp of the keys cvm-image enrolls: fixed, 2025-01-01T00:00:00Z. */
export const ENROLL_TIME = new Date(Date.UTC(2025, 0, 1))

/** enrollSecureBootStore with cvm-image's owner GUID and time stamp, for a PEM certificate. */
export function enrollCertificate(plain: Buffer, certPem: string, what?: string): Buffer {
  return enrollSecureBootStore(plain, new X509Certificate(certPem).raw, {owner: CVM_IMAGE_KEY_OWNER, time: ENROLL_TIME, what})
}
