import {createHash} from 'node:crypto'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {cli} from '../../test/helpers/cli.js'
import {makeGptDisk} from '../../test/helpers/disk-fixture.js'
import {buildUki, EFI_STUB} from '../disk/uki.js'
import type {BuildRecord} from '../pipeline/build-record.js'
import type {ValidateCheck, ValidateResult} from '../pipeline/results.js'
import {run} from '../util/exec.js'
import type {PcrExpectation} from '../validate/check-types.js'
import {OVMF_VARS} from '../validate/host-probe.js'
import {ENROLLED_STORE, writeEnrolledStore} from '../validate/secure-boot-store.js'
import {expectedPcrs, pcrOutcome} from '../validate/vtpm.js'
import type {ReleaseMeasurementEntry} from './manifest.js'
import {releaseMeasurements, validatedSecureBootVars} from './publish.js'

// A release's PCR entries as publish makes them from a build whose UKI is signed with the user's own
// key: PCR 7 with Secure Boot on for the store validation enrolled, and each entry proven on the
// validation's vTPM or predicted only, read from the tpm-pcrs evidence the validation kept.

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** the values a vTPM holds when every predicted PCR came out as predicted (PCR 11 at its last phase) */
function readAsPredicted(exp: PcrExpectation): Map<number, string> {
  const values = new Map([[11, exp.pcr11[exp.pcr11.length - 1].value]])
  if ('value' in exp.pcr4) values.set(4, exp.pcr4.value)
  if ('value' in exp.pcr7) values.set(7, exp.pcr7.value)
  return values
}

describe("a release's PCR entries: the store validation enrolled, and what the validation proved", () => {
  let dir: string
  let uki: Buffer
  let disk: string
  let validateDir: string
  let store: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cvm-manifest-proof-'))
    // a fresh certificate of the user's own, no store on this machine enrolls it
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=cvm-image own key test'], {what: 'make a signing key'})
    await writeFile(join(dir, 'cmdline'), 'console=ttyS0 root=PARTUUID=0f7a4c3e-1111-4e0c-9d7a-3b2f6c1d2e3f ro')
    await writeFile(join(dir, 'osrel'), 'ID=debian\n')
    await buildUki({vmlinuz: EFI_STUB, cmdlineFile: join(dir, 'cmdline'), osReleaseFile: join(dir, 'osrel')}, join(dir, 'uki.efi'), {sourceDateEpoch: 1_700_000_000})
    await run('osslsigncode', ['sign', '-certs', join(dir, 'cert.pem'), '-key', join(dir, 'key.pem'), '-h', 'sha256', '-in', join(dir, 'uki.efi'), '-out', join(dir, 'uki.signed.efi')], {what: 'sign the UKI'})
    uki = await readFile(join(dir, 'uki.signed.efi'))
    disk = (await makeGptDisk(join(dir, 'disk.raw'), 1, 'own-key', {uki: join(dir, 'uki.signed.efi')})).path
    // what the validate stage does for a certificate no given store enrolls
    validateDir = join(dir, 'validate')
    store = await writeEnrolledStore(validateDir, await readFile(OVMF_VARS), await readFile(join(dir, 'cert.pem'), 'utf8'), OVMF_VARS)
  }, 120_000)
  afterAll(() => rm(dir, {recursive: true, force: true}))

  function record(checks: ValidateCheck[], secureBootVars: ValidateResult['secureBootVars']): BuildRecord {
    const meta: ValidateResult = {verdict: 'passed', modes: ['emulated'], checks, secureBootVars}
    return {recipeId: 'own-key', recipe: {validate: {cpus: 1}}, stages: {validate: {stage: 'validate', key: 'k', dir: validateDir, meta}}} as unknown as BuildRecord
  }

  it('PCR 7 with Secure Boot on is predicted for the enrolled store (its sha256 recorded); what a boot read is proven, PCR 11 naming its phase; the rest predicted only', async () => {
    const storeSha256 = sha256(await readFile(store))
    const sbExp = expectedPcrs(uki, {firmwareBootsDisk: true, secureBoot: true}, {path: store, bytes: await readFile(store)})
    expect(sbExp.pcr7).toHaveProperty('value')
    // the Secure Boot boot's tpm-pcrs as the check words it; the disk boot had no swtpm
    const proved = pcrOutcome(readAsPredicted(sbExp), sbExp, '/dev/tpmrm0')
    expect(proved.verdict).toBe('pass')
    const checks: ValidateCheck[] = [
      {mode: 'emulated', name: 'disk-boot:tpm-pcrs', verdict: 'skip', evidence: 'no vTPM in this boot: localhost has no /usr/bin/swtpm (package swtpm)'},
      {mode: 'emulated', name: 'secure-boot:tpm-pcrs', ...proved},
    ]
    const {entries, notes} = await releaseMeasurements(record(checks, {file: ENROLLED_STORE, sha256: storeSha256}), disk)
    const pcr = (kind: string, p: (e: ReleaseMeasurementEntry) => boolean) => entries.find((e) => e.kind === kind && p(e))!
    const on = pcr('tpm-pcr7', (e) => e.params.secureBoot === 'on')
    expect(on).toBeDefined()
    expect(notes.join('\n')).not.toMatch(/no PCR 7 with Secure Boot on/)
    expect(on.value).toBe('value' in sbExp.pcr7 ? sbExp.pcr7.value : '')
    expect(on.params).toMatchObject({varStore: store, varStoreSha256: storeSha256})
    expect(on.proof).toEqual({status: 'proven-on-vtpm', checks: ['emulated/secure-boot:tpm-pcrs']})
    expect(pcr('tpm-pcr4', (e) => e.params.secureBoot === 'on').proof).toEqual({status: 'proven-on-vtpm', checks: ['emulated/secure-boot:tpm-pcrs']})
    expect(pcr('tpm-pcr11', (e) => e.params.phase === 'sysinit:ready').proof).toEqual({status: 'proven-on-vtpm', checks: ['emulated/secure-boot:tpm-pcrs'], phase: 'sysinit:ready'})
    // the boot read PCR 11 after the phases: the stub's value is a prediction no boot saw
    expect(pcr('tpm-pcr11', (e) => e.params.phase === 'stub').proof).toMatchObject({status: 'predicted-only'})
    // Secure Boot off was the disk boot's, which had no vTPM: predicted only, saying why
    for (const kind of ['tpm-pcr4', 'tpm-pcr7']) {
      expect(pcr(kind, (e) => e.params.secureBoot === 'off').proof).toEqual({status: 'predicted-only', why: expect.stringContaining('no vTPM in this boot') as string})
    }
  }, 120_000)

  it('a host without swtpm proves nothing: every entry is predicted only, with the skip reason', async () => {
    const checks: ValidateCheck[] = [{mode: 'emulated', name: 'tpm-pcrs', verdict: 'skip', evidence: 'no vTPM in this boot: localhost has no /usr/bin/swtpm (package swtpm)'}]
    const {entries} = await releaseMeasurements(record(checks, undefined), disk)
    expect(entries.filter((e) => e.kind.startsWith('tpm-pcr')).length).toBeGreaterThan(3)
    for (const e of entries) expect(e.proof.status, `${e.kind} ${JSON.stringify(e.params)}`).toBe('predicted-only')
    expect(entries.find((e) => e.kind === 'tpm-pcr11')!.proof).toEqual({status: 'predicted-only', why: expect.stringMatching(/^no validation boot read a vTPM: emulated\/tpm-pcrs skipped \(no vTPM in this boot/) as string})
  }, 120_000)

  it('`cvm-image measure <build>` predicts PCR 7 with Secure Boot on for the store the validation enrolled, as the release does', async () => {
    const storeSha256 = sha256(await readFile(store))
    const r = record([], {file: ENROLLED_STORE, sha256: storeSha256}) as unknown as Record<string, unknown> & {stages: Record<string, unknown>}
    r.stages.assemble = {stage: 'assemble', key: 'a', dir, meta: {diskSha256: sha256(await readFile(disk))}}
    const recordFile = join(dir, 'own-key.json')
    await writeFile(recordFile, JSON.stringify(r))
    const m = await cli(['measure', recordFile, '--mode', 'sev', '--json'])
    expect(m.code, m.stderr).toBe(0)
    const entries = (JSON.parse(m.stdout) as {measurements: ReleaseMeasurementEntry[]}).measurements
    const on = entries.find((e) => e.kind === 'tpm-pcr7' && e.params.secureBoot === 'on')
    expect(on?.params).toMatchObject({varStore: store, varStoreSha256: storeSha256})
    const {entries: released} = await releaseMeasurements(record([], {file: ENROLLED_STORE, sha256: storeSha256}), disk)
    expect(on?.value).toBe(released.find((e) => e.kind === 'tpm-pcr7' && e.params.secureBoot === 'on')?.value)
  }, 120_000)

  it('a store changed since validation booted it is refused, naming both sha256', async () => {
    const recorded = 'ab'.repeat(32)
    const err = await validatedSecureBootVars(record([], {file: ENROLLED_STORE, sha256: recorded})).catch((e: unknown) => e as Error)
    expect(err).toBeInstanceOf(Error)
    expect((err as Error).message).toContain(recorded)
    expect((err as Error).message).toContain(sha256(await readFile(store)))
    expect(await validatedSecureBootVars(record([], undefined))).toBeUndefined()
  })
})
