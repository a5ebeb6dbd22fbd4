import {chmod, copyFile, mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {inputRefusal} from './helpers/refusal.js'

import {EFI_STUB} from '../src/disk/uki.js'
import {checkSigningPair, signPe} from '../src/disk/secure-boot.js'
import {authenticodeSha256} from '../src/measure/authenticode.js'
import {buildManifest} from '../src/publish/manifest.js'
import {run} from '../src/util/exec.js'
import {sha256File} from '../src/util/fsx.js'
import {makeBuildRecordFixture} from './helpers/build-record-fixture.js'
import {cli} from './helpers/cli.js'
import {buildUntil} from './helpers/pipeline.js'
import {OVMF_VARS_SNAKEOIL} from '../src/validate/host-probe.js'
import {decryptedSnakeoilKey, SNAKEOIL_CERT, SNAKEOIL_KEY} from './helpers/snakeoil.js'
import type {ValidationReport} from '../src/validate/report.js'

/**
 * Secure Boot signing of the UKI (issue #18, item 1), checked with tools apart from the signer:
 * sbverify (sbsigntool) for the signature, openssl for the certificate's DER. The keys: Debian's
 * snakeoil pair, the one its OVMF_VARS_4M.snakeoil.fd enrolls (the shipped key is encrypted with the
 * password "snakeoil": the test decrypts a copy), and throwaway pairs made here.
 */
let work: string
let key: string
/** the snakeoil key as shipped (encrypted), in a file of mode 0600 */
let encryptedKey: string
let otherKey: string
let otherCert: string
let ecKey: string
let ecCert: string

const openssl = (args: string[]) => run('openssl', args, {cwd: work, what: 'make test keys (openssl)'})
const sbverify = (cert: string, file: string) => run('sbverify', ['--cert', cert, file], {reject: false})

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'cvm-secure-boot-'))
  key = await decryptedSnakeoilKey(join(work, 'snakeoil.key'))
  encryptedKey = join(work, 'snakeoil-encrypted.key')
  await copyFile(SNAKEOIL_KEY, encryptedKey)
  await chmod(encryptedKey, 0o600)
  otherKey = join(work, 'other.key')
  otherCert = join(work, 'other.pem')
  await openssl(['req', '-new', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', otherKey, '-out', otherCert, '-days', '30', '-subj', '/CN=cvm-image test other db key/'])
  ecKey = join(work, 'ec.key')
  ecCert = join(work, 'ec.pem')
  await openssl(['req', '-new', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', ecKey, '-out', ecCert, '-days', '30', '-subj', '/CN=cvm-image test ec/'])
}, 120_000)

afterAll(async () => {
  if (work) await rm(work, {recursive: true, force: true})
})

const refusal = inputRefusal

describe('the signing key and certificate are checked before any work', () => {
  it('takes the snakeoil pair, naming its certificate', () => {
    const cert = checkSigningPair({keyFile: key, certFile: SNAKEOIL_CERT})
    expect(cert.subject).toMatch(/snakeoil/i)
    expect(cert.pem).toMatch(/^-----BEGIN CERTIFICATE-----/)
  })

  it('refuses an encrypted key without its passphrase (the snakeoil key as Debian ships it), a key of another pair, an EC pair, and a file that is no certificate', () => {
    expect(refusal(() => checkSigningPair({keyFile: encryptedKey, certFile: SNAKEOIL_CERT})).message).toBe(`--signing-key ${encryptedKey} is encrypted`)
    expect(refusal(() => checkSigningPair({keyFile: otherKey, certFile: SNAKEOIL_CERT})).message).toMatch(/^--signing-key \S+other\.key is not the key of --signing-cert \/usr\/share\/ovmf\/PkKek-1-snakeoil\.pem/)
    expect(refusal(() => checkSigningPair({keyFile: ecKey, certFile: ecCert})).message).toMatch(/has a ec key; UEFI firmware verifies RSA signatures/)
    expect(refusal(() => checkSigningPair({keyFile: key, certFile: key})).message).toMatch(/is not an X\.509 certificate/)
  })

  it('the build command refuses them with exit 2 before any stage runs', async () => {
    const r = await cli(['build', 'debian-12', '--cache-dir', join(work, 'cache'), '--signing-key', encryptedKey, '--signing-cert', SNAKEOIL_CERT, '--until', 'assemble'])
    expect(r.code, r.stderr).toBe(2)
    expect(r.stderr).toContain(`--signing-key ${encryptedKey} is encrypted`)
    expect(r.stderr).toContain('--signing-key-passphrase-file')
    // the key as Debian ships it is world-readable (mode 0644): refused for that first, as OpenSSH would
    const open = await cli(['build', 'debian-12', '--cache-dir', join(work, 'cache'), '--signing-key', SNAKEOIL_KEY, '--signing-cert', SNAKEOIL_CERT, '--until', 'assemble'])
    expect(open.code, open.stderr).toBe(2)
    expect(open.stderr).toContain(`chmod 600 ${SNAKEOIL_KEY}`)
  })
})

describe('signPe: an Authenticode signature UEFI firmware checks', () => {
  it('signs a real PE (the systemd stub): sbverify accepts it with the snakeoil certificate, not with another', async () => {
    const pe = join(work, 'stub.efi')
    await copyFile(EFI_STUB, pe)
    expect((await sbverify(SNAKEOIL_CERT, pe)).exitCode, 'the stub as shipped is not signed by the snakeoil key').not.toBe(0)
    await signPe(pe, {keyFile: key, certFile: SNAKEOIL_CERT}, 1700000000)
    const ok = await sbverify(SNAKEOIL_CERT, pe)
    expect(ok.exitCode, ok.stdout + ok.stderr).toBe(0)
    expect(ok.stdout).toContain('Signature verification OK')
    expect((await sbverify(otherCert, pe)).exitCode).not.toBe(0)
  })

  it('gives the same bytes for the same inputs (the signing time is the build\'s), and another signing time gives others', async () => {
    const signed: string[] = []
    for (const [name, time] of [['a', 1700000000], ['b', 1700000000], ['c', 1700000001]] as const) {
      const pe = join(work, `${name}.efi`)
      await copyFile(EFI_STUB, pe)
      await signPe(pe, {keyFile: key, certFile: SNAKEOIL_CERT}, time)
      signed.push(await sha256File(pe))
    }
    expect(signed[0]).toBe(signed[1])
    expect(signed[2]).not.toBe(signed[0])
  })

  it('signs the digest src/measure computes for PCR 4: the signature holds the Authenticode digest of the signed file, as osslsigncode verify reads it', async () => {
    const pe = join(work, 'measured.efi')
    await copyFile(EFI_STUB, pe)
    await signPe(pe, {keyFile: key, certFile: SNAKEOIL_CERT}, 1700000000)
    const v = await run('osslsigncode', ['verify', '-CAfile', SNAKEOIL_CERT, '-in', pe], {reject: false})
    const inSignature = /^Current message digest\s*:\s*([0-9A-F]{64})/m.exec(v.stdout)?.[1]
    expect(inSignature, v.stdout).toBeDefined()
    expect(authenticodeSha256(await readFile(pe)).toString('hex')).toBe(inSignature!.toLowerCase())
  })
})

describe('the manifest of a signed build', () => {
  it('carries the certificate and, for GCE, the db entry in DER (as openssl writes it), and says unsigned without a key', async () => {
    const cert = checkSigningPair({keyFile: key, certFile: SNAKEOIL_CERT})
    const der = join(work, 'db.der')
    await openssl(['x509', '-in', SNAKEOIL_CERT, '-outform', 'DER', '-out', der])
    const {record} = await makeBuildRecordFixture(join(work, 'fixture-cache'), {secureBoot: {status: 'signed', certificate: cert}})
    const base = {version: '1', disk: {sha256: 'x'}, artifacts: [], validation: {status: 'passed' as const, modes: ['emulated']}, guestOsFeatures: [], provenance: {name: 'provenance.intoto.json', sha256: 'y'}}
    const m = buildManifest({record, ...base} as unknown as Parameters<typeof buildManifest>[0])
    expect(m.secureBoot).toEqual({
      status: 'signed',
      certificate: cert,
      gce: {shieldedInstanceInitialState: {dbs: [{content: (await readFile(der)).toString('base64'), fileType: 'X509'}]}},
    })
    const unsigned = await makeBuildRecordFixture(join(work, 'fixture-cache-2'))
    expect(buildManifest({record: unsigned.record, ...base} as unknown as Parameters<typeof buildManifest>[0]).secureBoot).toEqual({status: 'unsigned'})
  })
})

describe('a debian-12 disk assembled with the snakeoil key (real pipeline, shared test cache)', () => {
  let signed: Awaited<ReturnType<typeof buildUntil>>
  let unsigned: Awaited<ReturnType<typeof buildUntil>>
  beforeAll(async () => {
    signed = await buildUntil('debian-12', 'assemble', {signingKey: key, signingCert: SNAKEOIL_CERT})
    unsigned = await buildUntil('debian-12', 'assemble')
  }, 1_800_000)

  it('holds a UKI on its ESP that sbverify accepts, and its assemble key differs from the unsigned one', async () => {
    const a = signed.results.assemble!
    expect(a.key).not.toBe(unsigned.results.assemble!.key)
    expect(a.meta.secureBoot).toMatchObject({status: 'signed', certificate: {subject: expect.stringMatching(/snakeoil/i)}})
    expect(unsigned.results.assemble!.meta.secureBoot).toEqual({status: 'unsigned'})
    // the UKI as the firmware finds it: \EFI\BOOT\BOOTX64.EFI on the disk's ESP
    const disk = join(a.dir, 'disk.raw')
    const pt = JSON.parse((await run('sfdisk', ['-J', disk])).stdout).partitiontable as {partitions: {start: number}[]}
    const onEsp = join(work, 'BOOTX64.EFI')
    await run('mcopy', ['-n', '-o', '-i', `${disk}@@${pt.partitions[0].start * 512}`, '::/EFI/BOOT/BOOTX64.EFI', onEsp])
    expect(await sha256File(onEsp)).toBe(a.meta.ukiSha256)
    const v = await sbverify(SNAKEOIL_CERT, onEsp)
    expect(v.exitCode, v.stdout + v.stderr).toBe(0)
    expect((await sbverify(otherCert, onEsp)).exitCode).not.toBe(0)
  }, 300_000)

  // The firmware itself judges the signature: Debian's OVMF built with SMM and its variable store that
  // enrolls the snakeoil certificate, under QEMU (TCG). Only the Secure Boot boot runs here. Its seed
  // comes over HTTP, through QEMU's guestfwd relay to a Unix socket (src/validate/seed.ts): the one
  // boot of the suite that proves cloud-init reads the seed that way, at no extra boot.
  const validateUnderSecureBoot = (built: typeof signed, out: string) =>
    cli(['validate', join(built.results.assemble!.dir, 'disk.raw'), '--secure-boot-vars', OVMF_VARS_SNAKEOIL, '--no-uki-boot', '--no-disk-boot', '--seed', 'http', '--release', built.results.compile!.meta.release, '--out', out, '--json'], {timeoutMs: 800_000})

  it('boots under Secure Boot: the firmware starts the signed UKI, and the guest has SecureBoot on and says so', async () => {
    const out = join(work, 'validate-signed')
    const r = await validateUnderSecureBoot(signed, out)
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as ValidationReport
    expect(r.code, r.stderr).toBe(0)
    expect(report.modes.map((m) => m.boot)).toEqual(['emulated-secure-boot'])
    expect(report.modes[0].qemuArgs.join(' ')).toContain(`-machine q35,smm=on`)
    expect(report.modes[0].seed).toMatch(/^NoCloudNet over HTTP/)
    expect(report.checks.map((c) => `${c.name}: ${c.verdict}`)).toEqual([
      'secure-boot:boot: pass',
      'secure-boot:kernel: pass',
      'secure-boot:cmdline: pass',
      'secure-boot:secure-boot: pass',
      'secure-boot:tpm-pcrs: pass',
      'secure-boot:poweroff: pass',
      'image-unchanged: pass',
    ])
    expect(report.checks.find((c) => c.name === 'secure-boot:secure-boot')!.evidence).toMatch(/^SecureBoot variable: 1; dmesg: \[ *[\d.]+\] secureboot: Secure boot enabled$/)
    // PCR 4 with Secure Boot on: the signed UKI's digest, the stub's kernel not measured; PCR 7: the store's keys and the db entry that verified it (docs/pcr-measurements.md)
    expect(report.checks.find((c) => c.name === 'secure-boot:tpm-pcrs')!.evidence).toMatch(/PCR 4 [0-9a-f]{64} = predicted \(Secure Boot on\); PCR 7 [0-9a-f]{64} = predicted \(Secure Boot on\)$/)
  }, 900_000)

  it('the unsigned disk is refused by the same firmware: the boot fails at once with the firmware\'s "Access Denied", the checks after it skipped', async () => {
    const out = join(work, 'validate-unsigned')
    const started = Date.now()
    const r = await validateUnderSecureBoot(unsigned, out)
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as ValidationReport
    expect(r.code, r.stderr).toBe(1)
    const boot = report.checks.find((c) => c.name === 'secure-boot:boot')!
    expect(boot.verdict).toBe('fail')
    expect(boot.evidence).toMatch(/^the firmware would not boot the disk: BdsDxe: failed to load Boot\d+ "UEFI QEMU NVMe Ctrl cvmroot 1" .*: Access Denied;/)
    expect(report.checks.filter((c) => c.name !== 'secure-boot:boot' && c.name !== 'image-unchanged').map((c) => c.verdict)).toEqual(['skip', 'skip', 'skip', 'skip', 'skip'])
    // not the 600 s boot timeout, nor the minutes of network boot the firmware tries next
    console.log(`validate --secure-boot-vars of the unsigned disk: exit ${r.code} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  }, 900_000)
})
