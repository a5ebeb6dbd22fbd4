import {existsSync} from 'node:fs'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {EFI_STUB, buildUki} from '../disk/uki.js'
import {InputError} from '../errors.js'
import {parsePe} from '../disk/pe.js'
import {run, which} from '../util/exec.js'
import {authenticodeSha256} from './authenticode.js'
import {pcr4Events} from './pcr.js'

// The Authenticode SHA-256 firmware measures (docs/pcr-measurements.md "Authenticode"), checked
// against an independent implementation: osslsigncode signs a copy with a throwaway key and its
// verify prints the digest it signed and the one it recomputes from the signed file.

async function needCommand(cmd: string, pkg: string): Promise<void> {
  if (!(await which(cmd))) throw new Error(`${cmd} is missing: install the Debian package ${pkg} (apt-get install ${pkg}, or cvm-image doctor --install as root)`)
}

/** the bytes padded with zeros to a multiple of 8, as signing tools hash a file they sign */
function padTo8(b: Buffer): Buffer {
  return b.length % 8 ? Buffer.concat([b, Buffer.alloc(8 - (b.length % 8))]) : b
}

describe('Authenticode SHA-256 of a PE image (checked against osslsigncode)', () => {
  let dir: string
  let key: string
  let cert: string

  /** signs `file` with osslsigncode; the signed copy and the digest osslsigncode signed and recomputed */
  async function osslsigncode(file: string): Promise<{signed: Buffer; digest: string}> {
    const out = `${file}.signed`
    await rm(out, {force: true})
    await run('osslsigncode', ['sign', '-certs', cert, '-key', key, '-h', 'sha256', '-in', file, '-out', out], {what: 'sign a test image'})
    // verify fails on the self-signed certificate's chain, after it has printed both digests
    const v = await run('osslsigncode', ['verify', '-in', out], {reject: false})
    const current = /Current message digest\s*:\s*([0-9A-Fa-f]{64})/.exec(v.stdout)?.[1]
    const calculated = /Calculated message digest\s*:\s*([0-9A-Fa-f]{64})/.exec(v.stdout)?.[1]
    if (!current || !calculated) throw new Error(`osslsigncode verify printed no digests:\n${v.stdout}\n${v.stderr}`)
    expect(calculated.toLowerCase()).toBe(current.toLowerCase())
    return {signed: await readFile(out), digest: current.toLowerCase()}
  }

  beforeAll(async () => {
    await needCommand('osslsigncode', 'osslsigncode')
    await needCommand('sbverify', 'sbsigntool')
    await needCommand('openssl', 'openssl')
    if (!existsSync(EFI_STUB)) throw new Error(`${EFI_STUB} is missing: install the Debian package systemd-boot-efi`)
    dir = await mkdtemp(join(tmpdir(), 'cvm-authenticode-test-'))
    key = join(dir, 'key.pem')
    cert = join(dir, 'cert.pem')
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=cvm-image test'], {what: 'make a throwaway signing key'})
  }, 60_000)
  afterAll(async () => {
    if (dir) await rm(dir, {recursive: true, force: true})
  })

  it('of systemd-stub (a size no multiple of 8): padded as signers pad it, equals osslsigncode; the signed file gives the same', async () => {
    const stub = await readFile(EFI_STUB)
    expect(stub.length % 8).not.toBe(0)
    const {signed, digest} = await osslsigncode(EFI_STUB)
    expect(authenticodeSha256(padTo8(stub)).toString('hex')).toBe(digest)
    // the signature's checksum, certificate table entry and the table itself are left out
    expect(authenticodeSha256(signed).toString('hex')).toBe(digest)
  })

  it('of a UKI made as assemble makes it (a COFF symbol table after its sections) equals osslsigncode, signed or not', async () => {
    await writeFile(join(dir, 'linux'), Buffer.alloc(200_000, 0x5a))
    await writeFile(join(dir, 'cmdline'), 'root=PARTUUID=1 rw')
    await writeFile(join(dir, 'osrel'), 'ID=debian\n')
    await writeFile(join(dir, 'initrd'), Buffer.alloc(30_001, 0x11))
    const uki = join(dir, 'uki.efi')
    await buildUki({vmlinuz: join(dir, 'linux'), cmdlineFile: join(dir, 'cmdline'), osReleaseFile: join(dir, 'osrel'), initrd: join(dir, 'initrd')}, uki, {sourceDateEpoch: 1_700_000_000})
    const image = await readFile(uki)
    const {signed, digest} = await osslsigncode(uki)
    expect(authenticodeSha256(padTo8(image)).toString('hex')).toBe(digest)
    expect(authenticodeSha256(signed).toString('hex')).toBe(digest)
  })

  /**
   * The unpadded file with a signed copy's certificate table put right at its end (its directory
   * entry pointing there, at an offset no multiple of 8): both tools then hash the bytes before the
   * table as they are, with no padding, as firmware hashes the unsigned file. Their digests of it.
   */
  async function toolsOnUnpadded(file: string, name: string): Promise<{osslsigncode: string; sbverify: string; signerDigest: string}> {
    const image = await readFile(file)
    const {signed, digest: signerDigest} = await osslsigncode(file)
    const pe = parsePe(signed)
    const tableAt = signed.readUInt32LE(pe.certDirectoryOffset!)
    const grafted = Buffer.concat([image, signed.subarray(tableAt, tableAt + pe.certTableSize)])
    grafted.writeUInt32LE(image.length, pe.certDirectoryOffset!)
    grafted.writeUInt32LE(pe.certTableSize, pe.certDirectoryOffset! + 4)
    const out = join(dir, `${name}.unpadded-signed.efi`)
    await writeFile(out, grafted)
    // both fail (the signature is of the padded bytes) after printing the digest they computed
    const o = await run('osslsigncode', ['verify', '-in', out], {reject: false})
    const s = await run('sbverify', ['--cert', cert, out], {reject: false})
    const calculated = /Calculated message digest\s*:\s*([0-9A-Fa-f]{64})/.exec(o.stdout)?.[1]
    // sbverify: "got" is the signature's digest, "expecting" the one it computed of the image
    const computed = /expecting:\s*([0-9a-f]{64})/.exec(s.stdout + s.stderr)?.[1]
    if (!calculated || !computed) throw new Error(`no digest printed:\n${o.stdout}\n${s.stdout}${s.stderr}`)
    return {osslsigncode: calculated.toLowerCase(), sbverify: computed, signerDigest}
  }

  it('of an unpadded file (systemd-stub, a UKI), hashed as it is, equals osslsigncode and sbverify on the same unpadded bytes; PCR 4 measures that digest', async () => {
    // the stub stands in for the kernel: PCR 4's events read .linux as a PE image
    await writeFile(join(dir, 'linux2'), await readFile(EFI_STUB))
    await writeFile(join(dir, 'cmdline2'), 'root=PARTUUID=2 ro')
    await writeFile(join(dir, 'osrel2'), 'ID=debian\n')
    const ukiPath = join(dir, 'uki2.efi')
    await buildUki({vmlinuz: join(dir, 'linux2'), cmdlineFile: join(dir, 'cmdline2'), osReleaseFile: join(dir, 'osrel2')}, ukiPath, {sourceDateEpoch: 1_700_000_000})
    for (const [name, file] of [['stub', EFI_STUB], ['uki', ukiPath]] as const) {
      const image = await readFile(file)
      expect(image.length % 8, name).not.toBe(0)
      const tools = await toolsOnUnpadded(file, name)
      const ours = authenticodeSha256(image).toString('hex')
      expect(ours, name).toBe(tools.osslsigncode)
      expect(ours, name).toBe(tools.sbverify)
      // the padding signers add changes the digest: the unpadded rule is what this checks
      expect(ours, name).not.toBe(tools.signerDigest)
      if (name === 'uki') {
        const boot = pcr4Events(image, {secureBoot: false}).find((e) => e.type === 'EV_EFI_BOOT_SERVICES_APPLICATION')
        expect(boot?.digest).toBe(tools.osslsigncode)
      }
    }
  }, 60_000)

  it('of a file whose size is a multiple of 8 is what osslsigncode signs, with nothing added', async () => {
    const even = join(dir, 'even.efi')
    await writeFile(even, padTo8(await readFile(EFI_STUB)))
    const {digest} = await osslsigncode(even)
    expect(authenticodeSha256(await readFile(even)).toString('hex')).toBe(digest)
  })

  it('hashes sections in file order, whatever the order of the section table, as osslsigncode does', async () => {
    const stub = padTo8(await readFile(EFI_STUB))
    const coff = stub.readUInt32LE(0x3c) + 4
    const table = coff + 20 + stub.readUInt16LE(coff + 16)
    const swapped = Buffer.from(stub)
    stub.copy(swapped, table, table + 40, table + 80)
    stub.copy(swapped, table + 40, table, table + 40)
    await writeFile(join(dir, 'swapped.efi'), swapped)
    const {digest} = await osslsigncode(join(dir, 'swapped.efi'))
    expect(authenticodeSha256(swapped).toString('hex')).toBe(digest)
  })

  it('refuses a file cut short or that is no PE image, as an input error naming it', async () => {
    const stub = await readFile(EFI_STUB)
    expect(() => authenticodeSha256(stub.subarray(0, 0x300), 'BOOTX64.EFI')).toThrow(InputError)
    expect(() => authenticodeSha256(stub.subarray(0, 0x300), 'BOOTX64.EFI')).toThrow(/BOOTX64\.EFI/)
    expect(() => authenticodeSha256(Buffer.alloc(4096), 'BOOTX64.EFI')).toThrow(/not a PE image/)
  })
})
