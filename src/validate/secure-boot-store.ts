import {mkdir} from 'node:fs/promises'
import {join} from 'node:path'
import {enrollCertificate} from '../measure/ovmf-vars.js'
import {atomicWriteFile} from '../util/fsx.js'

/**
 * The variable store a Secure Boot boot starts from when no given store enrolls the UKI's signing
 * certificate: a copy of the plain store with the certificate enrolled as PK, KEK and db
 * (docs/secure-boot.md). It is kept in the validation's output directory under this name, beside
 * the reports, so that the boot can be repeated and its PCR 7 recomputed.
 */
export const ENROLLED_STORE = 'OVMF_VARS.secure-boot.fd'

/**
 * Writes outDir/ENROLLED_STORE (whole or not at all): `plain` (the bytes of the store named `what`)
 * with the PEM certificate enrolled. Returns its path. Both `cvm-image validate --secure-boot-cert`
 * and the build's validate stage make it here.
 */
export async function writeEnrolledStore(outDir: string, plain: Buffer, certPem: string, what: string): Promise<string> {
  const path = join(outDir, ENROLLED_STORE)
  await mkdir(outDir, {recursive: true})
  await atomicWriteFile(path, enrollCertificate(plain, certPem, what))
  return path
}
