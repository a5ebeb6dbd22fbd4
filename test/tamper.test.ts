import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {signPe} from '../src/disk/secure-boot.js'
import {run} from '../src/util/exec.js'
import {OVMF_VARS_SNAKEOIL} from '../src/validate/host-probe.js'
import {decryptedSnakeoilKey, SNAKEOIL_CERT} from './helpers/snakeoil.js'
import type {ValidationReport} from '../src/validate/report.js'
import {cli} from './helpers/cli.js'
import {buildUntil} from './helpers/pipeline.js'

/**
 * Tampered disks (issue #18): a UKI changed after it was built or signed is caught, by the Secure
 * Boot firmware (it refuses to start it) and by the vTPM (its PCRs are not the release's). The
 * disks are debian-12's, built through the pipeline (cache hits when the other image tests built
 * them); each tampered copy has its UKI changed on the ESP with mtools, nothing else.
 */
let work: string
let key: string
let signed: string
let unsigned: string

const MTOOLS_ENV = {MTOOLS_SKIP_CHECK: '1'}

/** the byte offset of the disk's ESP (partition 1), read with sfdisk apart from cvm-image's code */
async function espOffset(disk: string): Promise<number> {
  const pt = JSON.parse((await run('sfdisk', ['-J', disk])).stdout).partitiontable as {partitions: {start: number}[]}
  return pt.partitions[0].start * 512
}

/** A sparse copy of disk whose \EFI\BOOT\BOOTX64.EFI is change(the UKI's path) applied to it. */
async function tamperedCopy(disk: string, name: string, change: (uki: string) => Promise<void>): Promise<string> {
  const copy = join(work, `${name}.raw`)
  await run('cp', ['--sparse=always', disk, copy])
  const img = `${copy}@@${await espOffset(copy)}`
  const uki = join(work, `${name}.efi`)
  await run('mcopy', ['-n', '-o', '-i', img, '::/EFI/BOOT/BOOTX64.EFI', uki], {env: MTOOLS_ENV})
  await change(uki)
  await run('mcopy', ['-o', '-i', img, uki, '::/EFI/BOOT/BOOTX64.EFI'], {env: MTOOLS_ENV})
  return copy
}

/** Changes one byte of the UKI's .osrel section (its text: "Debian" becomes "debian"); the kernel and command line stay as they were. */
async function changeOneByte(uki: string): Promise<void> {
  const pe = await readFile(uki)
  const coff = pe.readUInt32LE(0x3c) + 4
  const table = coff + 20 + pe.readUInt16LE(coff + 16)
  for (let i = 0; i < pe.readUInt16LE(coff + 2); i++) {
    const at = table + i * 40
    if (pe.toString('latin1', at, at + 8).replace(/\0+$/, '') !== '.osrel') continue
    const raw = pe.readUInt32LE(at + 20)
    const text = pe.toString('latin1', raw, raw + pe.readUInt32LE(at + 16))
    const where = text.indexOf('Debian')
    expect(where, 'the .osrel section names Debian').toBeGreaterThanOrEqual(0)
    pe[raw + where] = 'd'.charCodeAt(0)
    await writeFile(uki, pe)
    return
  }
  throw new Error(`${uki} has no .osrel section`)
}

const report = async (out: string) => JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as ValidationReport

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'cvm-tamper-'))
  key = await decryptedSnakeoilKey(join(work, 'snakeoil.key'))
  signed = join((await buildUntil('debian-12', 'assemble', {signingKey: key, signingCert: SNAKEOIL_CERT})).results.assemble!.dir, 'disk.raw')
  unsigned = join((await buildUntil('debian-12', 'assemble')).results.assemble!.dir, 'disk.raw')
}, 1_800_000)

afterAll(async () => {
  if (work) await rm(work, {recursive: true, force: true})
})

describe('tampered disks: the firmware and the vTPM catch them (real QEMU + OVMF + swtpm, TCG)', () => {
  it('the Secure Boot firmware refuses a signed UKI with one byte changed, and a UKI signed by a key its db lacks ("Access Denied"); a store that enrolls that key boots it', async () => {
    const otherKey = join(work, 'other.key')
    const otherCert = join(work, 'other.pem')
    await run('openssl', ['req', '-new', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', otherKey, '-out', otherCert, '-days', '30', '-subj', '/CN=cvm-image test other db key/'])
    const oneByte = await tamperedCopy(signed, 'signed-one-byte', changeOneByte)
    const otherSigner = await tamperedCopy(unsigned, 'other-signer', (uki) => signPe(uki, {keyFile: otherKey, certFile: otherCert}, 1_700_000_000))
    // the two boots at once: each stops as soon as the firmware says no
    const outs = ['one-byte', 'other-signer'].map((n) => join(work, `validate-${n}`))
    const runs = await Promise.all(
      [oneByte, otherSigner].map((disk, i) => cli(['validate', disk, '--secure-boot-vars', OVMF_VARS_SNAKEOIL, '--no-uki-boot', '--no-disk-boot', '--out', outs[i], '--json'], {timeoutMs: 800_000})),
    )
    for (const [i, r] of runs.entries()) {
      expect(r.code, r.stderr).toBe(1)
      const boot = (await report(outs[i])).checks.find((c) => c.name === 'secure-boot:boot')!
      expect(boot.verdict).toBe('fail')
      expect(boot.evidence).toMatch(/^the firmware would not boot the disk: BdsDxe: failed to load Boot\d+ "UEFI QEMU NVMe Ctrl cvmroot 1" .*: Access Denied;/)
    }
    // the same UKI with a store that enrolls its signer's certificate (validate --secure-boot-cert): Secure Boot on, it boots,
    // and PCR 7 holds that store's keys and the db entry that verified it
    const own = join(work, 'validate-own-key')
    const r = await cli(['validate', otherSigner, '--secure-boot-cert', otherCert, '--no-uki-boot', '--no-disk-boot', '--out', own, '--json'], {timeoutMs: 800_000})
    expect(r.code, r.stderr).toBe(0)
    const checks = (await report(own)).checks
    expect(checks.map((c) => `${c.name}: ${c.verdict}`)).toEqual(['secure-boot:boot: pass', 'secure-boot:kernel: skip', 'secure-boot:cmdline: pass', 'secure-boot:secure-boot: pass', 'secure-boot:tpm-pcrs: pass', 'secure-boot:poweroff: pass', 'image-unchanged: pass'])
    expect(checks.find((c) => c.name === 'secure-boot:tpm-pcrs')!.evidence).toMatch(/PCR 7 [0-9a-f]{64} = predicted \(Secure Boot on\)$/)
  }, 1_500_000)

  it("a disk whose UKI changed after its measurements were taken boots, and tpm-pcrs fails naming PCR 11 and PCR 4 with the release's values", async () => {
    // the release's expected measurements, as `cvm-image measure --json` gives them (a manifest carries the same list)
    const measured = await cli(['measure', unsigned, '--mode', 'sev', '--json'])
    expect(measured.code, measured.stderr).toBe(0)
    const measurements = join(work, 'measurements.json')
    await writeFile(measurements, measured.stdout)
    const entries = (JSON.parse(measured.stdout) as {measurements: {kind: string; value: string; params: Record<string, unknown>}[]}).measurements
    const pcr4 = entries.find((e) => e.kind === 'tpm-pcr4' && e.params.secureBoot === 'off')!.value
    const tampered = await tamperedCopy(unsigned, 'unsigned-one-byte', changeOneByte)
    const out = join(work, 'validate-pcrs')
    const r = await cli(['validate', tampered, '--measurements', measurements, '--no-uki-boot', '--disk-boot', '--out', out, '--json'], {timeoutMs: 1_500_000})
    expect(r.code, r.stderr).toBe(1)
    const checks = (await report(out)).checks
    const by = (n: string) => checks.find((c) => c.name === n)!
    // the firmware booted it (no Secure Boot), the guest ran, only the measurements tell
    for (const n of ['disk-boot:boot', 'disk-boot:cmdline', 'disk-boot:poweroff', 'image-unchanged']) expect(by(n).verdict, `${n}: ${by(n).evidence}`).toBe('pass')
    const pcrs = by('disk-boot:tpm-pcrs')
    expect(pcrs.verdict).toBe('fail')
    expect(pcrs.evidence).toMatch(/^PCR 11 and PCR 4 differ from the prediction: \/dev\/tpmrm0/)
    expect(pcrs.evidence).toContain(`predicted ${pcr4} (Secure Boot off)`)
    // measure --json of a disk file carries no disk sha256: the report says what is not covered
    expect(by('release-disk')).toMatchObject({verdict: 'skip', evidence: expect.stringContaining('the root filesystem is not covered')})
  }, 1_800_000)
})
