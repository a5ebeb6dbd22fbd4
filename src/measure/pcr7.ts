import {createHash} from 'node:crypto'

import {parsePe} from '../disk/pe.js'
import {authenticodeSha256} from './authenticode.js'
import {guidBytes} from './guid.js'
import {EFI_CERT_SHA256, EFI_CERT_X509, EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE, signatureEntries, variable, type EfiVariable, type SignatureEntry} from './ovmf-vars.js'
import {replayPcr, type PcrEvent, type PcrPrediction} from './pcr.js'

/**
 * PCR 7, the Secure Boot policy, as edk2 measures it (SecurityPkg/Tcg/Tcg2Dxe/Tcg2Dxe.c
 * MeasureSecureBootPolicy, MeasureAllSecureVariables; SecurityPkg/Library/DxeImageVerificationLib
 * for the authority). docs/pcr-measurements.md "PCR 7".
 */
export const PCR_SECURE_BOOT_POLICY = 7

/** The variables edk2 measures into PCR 7, in order; each is measured whether the store holds it or not (then with no data). */
const POLICY_VARIABLES: readonly [string, string][] = [
  ['SecureBoot', EFI_GLOBAL_VARIABLE],
  ['PK', EFI_GLOBAL_VARIABLE],
  ['KEK', EFI_GLOBAL_VARIABLE],
  ['db', EFI_IMAGE_SECURITY_DATABASE],
  ['dbx', EFI_IMAGE_SECURITY_DATABASE],
]

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest()

/** UEFI_VARIABLE_DATA (TCG PC Client PFP): VariableName (the vendor GUID), UnicodeNameLength, VariableDataLength, the name in UCS-2 without its NUL, the data. */
export function uefiVariableData(name: string, guid: string, data: Buffer): Buffer {
  const head = Buffer.alloc(32)
  guidBytes(guid).copy(head, 0)
  head.writeBigUInt64LE(BigInt(name.length), 16)
  head.writeBigUInt64LE(BigInt(data.length), 24)
  return Buffer.concat([head, Buffer.from(name, 'utf16le'), data])
}

/**
 * The db entry the firmware verifies the UKI with, as DxeImageVerificationLib finds it: an X.509
 * certificate of db that is among the certificates the UKI's Authenticode signature carries (its
 * signer, as osslsigncode and sbsign embed it), or the UKI's own Authenticode SHA-256 listed in db.
 * Undefined when db holds neither: the firmware would refuse the UKI, or trust it through a chain
 * this function does not follow (a db CA whose certificate the signature does not carry).
 */
export function verifyingDbEntry(db: readonly SignatureEntry[], uki: Buffer): SignatureEntry | undefined {
  const pe = parsePe(uki)
  const table = pe.certTableSize > 0 && pe.certDirectoryOffset !== undefined ? uki.subarray(uki.readUInt32LE(pe.certDirectoryOffset), uki.readUInt32LE(pe.certDirectoryOffset) + pe.certTableSize) : undefined
  if (table) {
    const cert = db.find((e) => e.type === EFI_CERT_X509 && e.data.length > 0 && table.includes(e.data))
    if (cert) return cert
  }
  const digest = authenticodeSha256(uki)
  return db.find((e) => e.type === EFI_CERT_SHA256 && e.data.equals(digest))
}

export type Pcr7Result = {prediction: PcrPrediction} | {notPredicted: string}

/**
 * PCR 7 of a boot with this variable store:
 * 1. EV_EFI_VARIABLE_DRIVER_CONFIG for SecureBoot (1 byte: 1 when on), PK, KEK, db, dbx, each the
 *    UEFI_VARIABLE_DATA of the store's value (none: no data), and dbt when the store has it;
 * 2. EV_SEPARATOR, 4 zero bytes;
 * 3. with Secure Boot on, EV_EFI_VARIABLE_AUTHORITY: the db entry that verified the UKI (its
 *    EFI_SIGNATURE_DATA, owner GUID and certificate), measured once, when the firmware loads it.
 * systemd-stub's own kernel is vouched for by the stub, not the firmware: no authority event.
 */
export function predictPcr7(store: readonly EfiVariable[], opts: {secureBoot: boolean; uki?: Buffer}): Pcr7Result {
  const events: PcrEvent[] = []
  const config = (name: string, guid: string, data: Buffer) =>
    events.push({pcr: PCR_SECURE_BOOT_POLICY, type: 'EV_EFI_VARIABLE_DRIVER_CONFIG', what: `${name} (${data.length} bytes)`, digest: sha256(uefiVariableData(name, guid, data)).toString('hex')})
  for (const [name, guid] of POLICY_VARIABLES) {
    config(name, guid, name === 'SecureBoot' ? Buffer.from([opts.secureBoot ? 1 : 0]) : (variable(store, name, guid) ?? Buffer.alloc(0)))
  }
  const dbt = variable(store, 'dbt', EFI_IMAGE_SECURITY_DATABASE)
  if (dbt && dbt.length > 0) config('dbt', EFI_IMAGE_SECURITY_DATABASE, dbt)
  events.push({pcr: PCR_SECURE_BOOT_POLICY, type: 'EV_SEPARATOR', what: 'separator (00000000)', digest: sha256(Buffer.alloc(4)).toString('hex')})
  if (opts.secureBoot) {
    if (!opts.uki) return {notPredicted: 'with Secure Boot on, PCR 7 holds the db entry that verified the UKI: no UKI was given'}
    const db = signatureEntries(variable(store, 'db', EFI_IMAGE_SECURITY_DATABASE) ?? Buffer.alloc(0), 'db')
    const entry = verifyingDbEntry(db, opts.uki)
    if (!entry) return {notPredicted: "the variable store's db holds neither a certificate the UKI's signature carries nor the UKI's hash"}
    events.push({pcr: PCR_SECURE_BOOT_POLICY, type: 'EV_EFI_VARIABLE_AUTHORITY', what: `db entry (${entry.type === EFI_CERT_X509 ? 'X.509 certificate' : 'SHA-256 of the image'}, owner ${entry.owner})`, digest: sha256(uefiVariableData('db', EFI_IMAGE_SECURITY_DATABASE, entry.entry)).toString('hex')})
  }
  return {prediction: replayPcr(PCR_SECURE_BOOT_POLICY, events)}
}
