import {InputError} from '../errors.js'
import {guidString} from './guid.js'

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

/** The live variables of an OVMF variable store, in store order. */
export function readVariableStore(fd: Buffer, what = 'the variable store'): EfiVariable[] {
  const bad = (why: string) =>
    new InputError(`${what} is not an OVMF variable store: ${why}`, {hint: 'give an OVMF_VARS file (e.g. /usr/share/OVMF/OVMF_VARS_4M.fd), the second pflash QEMU boots with'})
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
    if (dataEnd > end) throw bad(`the variable at byte ${o} runs past the store's end`)
    if (LIVE_STATES.has(state)) {
      const guid = guidString(fd.subarray(o + 44, o + 60))
      const name = fd.toString('utf16le', o + AUTH_HEADER_SIZE, o + AUTH_HEADER_SIZE + nameSize).replace(/\0+$/, '')
      const key = `${guid}/${name}`
      live.delete(key) // the later copy is the live one: keep store order by it
      live.set(key, {name, guid, attributes: fd.readUInt32LE(o + 4), data: Buffer.from(fd.subarray(o + AUTH_HEADER_SIZE + nameSize, dataEnd))})
    }
    o = (dataEnd + 3) & ~3
  }
  return [...live.values()]
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
