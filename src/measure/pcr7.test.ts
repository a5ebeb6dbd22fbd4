import {createHash, X509Certificate} from 'node:crypto'
import {copyFile, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {signPe} from '../disk/secure-boot.js'
import {buildUki, EFI_STUB} from '../disk/uki.js'
import {InputError} from '../errors.js'
import {run} from '../util/exec.js'
import {decryptedSnakeoilKey} from '../../test/helpers/snakeoil.js'
import {OVMF_VARS, OVMF_VARS_SNAKEOIL, SNAKEOIL_CERT} from '../validate/host-probe.js'
import {authenticodeSha256} from './authenticode.js'
import {guidBytes} from './guid.js'
import {CVM_IMAGE_KEY_OWNER, EFI_CERT_SHA256, EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE, enrollCertificate, readVariableStore, signatureEntries, variable} from './ovmf-vars.js'
import {predictPcr7, verifyingDbEntry} from './pcr7.js'

// PCR 7 (docs/pcr-measurements.md "PCR 7") from Debian's own OVMF variable stores. The values a
// real boot gives are checked against a vTPM by the boot tests (tpm-pcrs in test/validate-boot.test.ts
// and test/secure-boot.test.ts); here, what the store holds and which db entry verifies which UKI.

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/**
 * PCR 7 that OVMF (Debian's ovmf 2022.11-6+deb12u2, OVMF_CODE_4M.fd) measured with this
 * OVMF_VARS_4M.fd under swtpm 0.7.1, read in a debian-12 guest by tpm-pcrs: an outside value for the
 * store below. Another store (another ovmf build) has its own; the test then says so and skips.
 */
const MEASURED_PLAIN = {storeSha256: '5d2ac383371b408398accee7ec27c8c09ea5b74a0de0ceea6513388b15be5d1e', pcr7: '65caf8dd1e0ea7a6347b635d2b379c93b9a1351edc2afc3ecda700e534eb3068'}

let dir: string
let snakeoilKey: string
let unsigned: Buffer
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cvm-pcr7-'))
  snakeoilKey = await decryptedSnakeoilKey(join(dir, 'snakeoil.key'))
  await writeFile(join(dir, 'cmdline'), 'console=ttyS0')
  await writeFile(join(dir, 'osrel'), 'ID=debian\n')
  await buildUki({vmlinuz: EFI_STUB, cmdlineFile: join(dir, 'cmdline'), osReleaseFile: join(dir, 'osrel')}, join(dir, 'uki.efi'), {sourceDateEpoch: 1_700_000_000})
  unsigned = await readFile(join(dir, 'uki.efi'))
}, 60_000)
afterAll(() => rm(dir, {recursive: true, force: true}))

/** the UKI signed with a key (osslsigncode, as assemble signs) */
async function signedWith(key: string, cert: string, name: string): Promise<Buffer> {
  const f = join(dir, `${name}.efi`)
  await copyFile(join(dir, 'uki.efi'), f)
  await signPe(f, {keyFile: key, certFile: cert}, 1_700_000_000)
  return readFile(f)
}

describe('OVMF variable stores (Debian 12 ovmf)', () => {
  it('the snakeoil store enrolls the snakeoil certificate as PK, KEK and db, and holds a dbx; the plain store holds no keys', async () => {
    const snakeoil = readVariableStore(await readFile(OVMF_VARS_SNAKEOIL), OVMF_VARS_SNAKEOIL)
    const der = new X509Certificate(await readFile(SNAKEOIL_CERT)).raw
    for (const [name, guid] of [['PK', EFI_GLOBAL_VARIABLE], ['KEK', EFI_GLOBAL_VARIABLE], ['db', EFI_IMAGE_SECURITY_DATABASE]]) {
      const entries = signatureEntries(variable(snakeoil, name, guid)!, name)
      expect(entries.map((e) => e.data.equals(der)), name).toEqual([true])
    }
    expect(variable(snakeoil, 'dbx', EFI_IMAGE_SECURITY_DATABASE)?.length).toBeGreaterThan(0)
    // each name once: the older copies of a rewritten variable (BootOrder, ConOut) are not live
    const names = snakeoil.map((v) => `${v.guid}/${v.name}`)
    expect(new Set(names).size).toBe(names.length)
    const plain = readVariableStore(await readFile(OVMF_VARS), OVMF_VARS)
    for (const name of ['PK', 'KEK', 'db', 'dbx']) expect(plain.find((v) => v.name === name), name).toBeUndefined()
  })

  it('refuses a file that is no variable store, and a signature list whose sizes do not add up, saying what', async () => {
    expect(() => readVariableStore(Buffer.alloc(4096), 'zeros.fd')).toThrow(/zeros.fd is not an OVMF variable store: no firmware volume signature/)
    const code = await readFile('/usr/share/OVMF/OVMF_CODE_4M.fd')
    expect(() => readVariableStore(code, 'code.fd')).toThrow(InputError)
    const list = Buffer.alloc(28)
    list.writeUInt32LE(1000, 16)
    expect(() => signatureEntries(list, 'db')).toThrow(/db: a signature list at byte 0 has inconsistent sizes/)
  })
})

describe('PCR 7', () => {
  it('with Secure Boot off and the plain store: the value OVMF measured into a real vTPM', async (ctx) => {
    const bytes = await readFile(OVMF_VARS)
    if (sha256(bytes) !== MEASURED_PLAIN.storeSha256) ctx.skip(`${OVMF_VARS} is not the store the value was measured with (sha256 ${sha256(bytes)})`)
    const r = predictPcr7(readVariableStore(bytes), {secureBoot: false})
    expect('prediction' in r && r.prediction.value).toBe(MEASURED_PLAIN.pcr7)
    expect('prediction' in r && r.prediction.events.map((e) => `${e.type} ${e.what}`)).toEqual([
      'EV_EFI_VARIABLE_DRIVER_CONFIG SecureBoot (1 bytes)',
      'EV_EFI_VARIABLE_DRIVER_CONFIG PK (0 bytes)',
      'EV_EFI_VARIABLE_DRIVER_CONFIG KEK (0 bytes)',
      'EV_EFI_VARIABLE_DRIVER_CONFIG db (0 bytes)',
      'EV_EFI_VARIABLE_DRIVER_CONFIG dbx (0 bytes)',
      'EV_SEPARATOR separator (00000000)',
    ])
  })

  it('with Secure Boot on: the keys, then the db entry that verified the UKI; none for a UKI no db entry verifies', async () => {
    const store = readVariableStore(await readFile(OVMF_VARS_SNAKEOIL))
    const signed = await signedWith(snakeoilKey, SNAKEOIL_CERT, 'snakeoil')
    const r = predictPcr7(store, {secureBoot: true, uki: signed})
    if (!('prediction' in r)) throw new Error(r.notPredicted)
    expect(r.prediction.events.map((e) => e.type)).toEqual([...Array(5).fill('EV_EFI_VARIABLE_DRIVER_CONFIG'), 'EV_SEPARATOR', 'EV_EFI_VARIABLE_AUTHORITY'])
    // the same keys with Secure Boot off measure the same variables but SecureBoot, and no authority
    const off = predictPcr7(store, {secureBoot: false})
    expect('prediction' in off && off.prediction.events.slice(1, 6)).toEqual(r.prediction.events.slice(1, 6))
    expect(predictPcr7(store, {secureBoot: true, uki: unsigned})).toMatchObject({notPredicted: expect.stringMatching(/db holds neither/)})
    expect(predictPcr7(store, {secureBoot: true})).toMatchObject({notPredicted: expect.stringMatching(/no UKI was given/)})
  })

  it("verifyingDbEntry: the db certificate the signature carries, or the UKI's Authenticode hash in db; not another key's signature", async () => {
    const db = signatureEntries(variable(readVariableStore(await readFile(OVMF_VARS_SNAKEOIL)), 'db', EFI_IMAGE_SECURITY_DATABASE)!)
    expect(verifyingDbEntry(db, await signedWith(snakeoilKey, SNAKEOIL_CERT, 'snakeoil'))).toBe(db[0])
    await run('openssl', ['req', '-new', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'other.key'), '-out', join(dir, 'other.pem'), '-days', '30', '-subj', '/CN=cvm-image pcr7 test/'])
    expect(verifyingDbEntry(db, await signedWith(join(dir, 'other.key'), join(dir, 'other.pem'), 'other'))).toBeUndefined()
    expect(verifyingDbEntry(db, unsigned)).toBeUndefined()
    // a db holding the image's hash (EFI_CERT_SHA256_GUID list), written here from the UEFI layout
    const entry = Buffer.concat([guidBytes('11111111-2222-3333-4444-555555555555'), authenticodeSha256(unsigned)])
    const head = Buffer.alloc(28)
    guidBytes(EFI_CERT_SHA256).copy(head, 0)
    head.writeUInt32LE(28 + entry.length, 16)
    head.writeUInt32LE(entry.length, 24)
    const hashDb = signatureEntries(Buffer.concat([head, entry]))
    expect(verifyingDbEntry(hashDb, unsigned)?.owner).toBe('11111111-2222-3333-4444-555555555555')
  })
})

describe('enrolling a certificate into the plain store (what validate --secure-boot-cert and a signed build boot with)', () => {
  it('PK, KEK and db each hold the one certificate, owned by cvm-image; the same bytes every time; a store with keys is refused', async () => {
    await run('openssl', ['req', '-new', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'mine.key'), '-out', join(dir, 'mine.pem'), '-days', '30', '-subj', '/CN=cvm-image enroll test/'])
    const pem = await readFile(join(dir, 'mine.pem'), 'utf8')
    const plain = await readFile(OVMF_VARS)
    const made = enrollCertificate(plain, pem)
    expect(made.length).toBe(plain.length)
    expect(enrollCertificate(plain, pem).equals(made)).toBe(true)
    const vars = readVariableStore(made)
    const der = new X509Certificate(pem).raw
    for (const [name, guid] of [['PK', EFI_GLOBAL_VARIABLE], ['KEK', EFI_GLOBAL_VARIABLE], ['db', EFI_IMAGE_SECURITY_DATABASE]]) {
      expect(vars.find((v) => v.name === name)?.attributes, name).toBe(0x27)
      expect(signatureEntries(variable(vars, name, guid)!).map((e) => [e.owner, e.data.equals(der)]), name).toEqual([[CVM_IMAGE_KEY_OWNER, true]])
    }
    // the headers (firmware volume, variable store) and the rest past the new variables are the plain store's
    const headers = plain.readUInt16LE(48) + 28
    expect(made.subarray(0, headers).equals(plain.subarray(0, headers))).toBe(true)
    expect(made.subarray(0x10000).equals(plain.subarray(0x10000))).toBe(true)
    // a UKI signed with the key: db verifies it, so PCR 7 under Secure Boot can be predicted (the boot test checks it on a vTPM)
    const signed = await signedWith(join(dir, 'mine.key'), join(dir, 'mine.pem'), 'mine')
    expect(predictPcr7(vars, {secureBoot: true, uki: signed})).toHaveProperty('prediction')
    const snakeoil = await readFile(OVMF_VARS_SNAKEOIL)
    expect(() => enrollCertificate(snakeoil, pem, 'snakeoil.fd')).toThrow(/snakeoil.fd holds PK already/)
  })
})
