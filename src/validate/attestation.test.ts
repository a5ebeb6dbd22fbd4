import {randomBytes} from 'node:crypto'
import {chmod, mkdtemp, readdir, rm, symlink, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {recordedContext} from '../../test/helpers/recorded-guest.js'
import type {MeasurementEntry} from '../measure/entry.js'
import {run} from '../util/exec.js'
import {
  attestationOutcome,
  attestationScript,
  checkAttestationReport,
  checkLaunchMeasurement,
  NONCE_BYTES,
  parseAttestation,
  SNP_REPORT,
  snpLaunchExpectation,
  snpMeasurement,
} from './attestation.js'

/** An invented SNP ATTESTATION_REPORT (no SNP guest exists here): version 2, policy 0x30000, the nonce and a measurement at their offsets. */
function simulatedSnpReport(nonce: Buffer, measurement: Buffer): Buffer {
  const r = Buffer.alloc(SNP_REPORT.bytes)
  r.writeUInt32LE(2, 0)
  r.writeBigUInt64LE(0x30000n, SNP_REPORT.policy)
  nonce.copy(r, SNP_REPORT.reportData)
  measurement.copy(r, SNP_REPORT.measurement)
  return r
}

const snpEntry = (value: string, vcpus: number, vmm = 'qemu'): MeasurementEntry => ({
  kind: 'snp-launch',
  value,
  algorithm: 'sha384',
  dependsOn: ['firmware', 'vcpus', 'cpu-signature', 'guest-features', 'vmm'],
  params: {firmware: '/usr/share/ovmf/OVMF.fd', firmwareSha256: 'ab', vcpus, cpuType: 'EPYC-Milan', guestFeatures: '0x1', vmm},
  description: 'simulated',
})

describe('the attestation script on this machine (real sh and python3; no configfs-tsm, /dev/sev-guest or /dev/tdx_guest here)', () => {
  it('runs under sh and says there is no way to take a report, which the check fails naming the pieces', async () => {
    const nonce = randomBytes(NONCE_BYTES)
    // as nobody, its files in a temp dir: the guest script's modprobe and mount change nothing on this machine
    const dir = await mkdtemp(join(tmpdir(), 'cvm-attest-sh-'))
    await chmod(dir, 0o777)
    try {
      const r = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'env', `CVM_ATTEST_DIR=${dir}`, 'sh', '-c', attestationScript()], {reject: false, input: nonce})
      const parsed = parseAttestation(`${r.stdout}\n${r.stderr}`, nonce)
      expect(parsed.report).toBeUndefined()
      const o = attestationOutcome('snp', parsed)
    expect(o.verdict).toBe('fail')
      expect(o.evidence).toMatch(/^no attestation report .*no configfs-tsm report directory \(\/sys\/kernel\/config\/tsm\/report\) and no \/dev\/sev-guest or \/dev\/tdx_guest/)
      // it cleans up after itself
      expect(await readdir(dir)).toEqual([])
    } finally {
      await rm(dir, {recursive: true, force: true})
    }
  })

  it('the pre-6.7 ioctl helper really runs: the SNP_GET_REPORT and TDX_CMD_GET_REPORT0 requests reach a device that is not a guest driver and come back refused (ENOTTY)', async () => {
    const script = attestationScript()
    const py = /<<'PYEOF'\n([\s\S]*?)PYEOF\n/.exec(script)![1]
    const dir = await mkdtemp(join(tmpdir(), 'cvm-attest-'))
    try {
      await writeFile(join(dir, 'helper.py'), py)
      for (const [name, request] of [['sev-guest', 'SNP_GET_REPORT'], ['tdx_guest', 'TDX_CMD_GET_REPORT0']]) {
        await symlink('/dev/null', join(dir, name))
        const r = await run('python3', [join(dir, 'helper.py'), join(dir, name)], {reject: false, input: randomBytes(NONCE_BYTES)})
        expect(r.exitCode).toBe(0)
        expect(r.stdout).toMatch(new RegExp(`^provider: ${name.replace('-', '_')}`))
        expect(r.stdout).toMatch(new RegExp(`error: ${request}: \\[Errno 25\\] Inappropriate ioctl for device`))
      }
    } finally {
      await rm(dir, {recursive: true, force: true})
    }
  })
})

describe('attestation-report and launch-measurement (simulated SNP and TDX guests: the guest\'s answers are invented)', () => {
  const measurement = randomBytes(48)

  /** a recorded guest that answers the script with a report built from the nonce the check sends */
  const answering = (mode: 'snp' | 'tdx', build: (nonce: Buffer) => {provider: string; report: Buffer}, method = 'configfs-tsm (/sys/kernel/config/tsm/report/cvm-image-1)') => ({
    exec: async (_args: readonly string[], opts: {stdin?: Buffer | string}) => {
      const {provider, report} = build(opts.stdin as Buffer)
      return {exitCode: 0, stdout: `method: ${method}\nprovider: ${provider}\nreport: ${report.toString('hex')}\n`, stderr: ''}
    },
    fire: () => {},
    mode,
  })

  it('simulated SNP guest: a fresh report with the nonce passes, and its MEASUREMENT equal to the predicted digest for this boot\'s vCPUs passes', async () => {
    const guest = answering('snp', (nonce) => ({provider: 'sev_guest', report: simulatedSnpReport(nonce, measurement)}))
    const expected = snpLaunchExpectation({entries: [snpEntry('00'.repeat(48), 4), snpEntry(measurement.toString('hex'), 2)], source: 'manifest.json'}, 2)
    const ctx = recordedContext(guest, {mode: 'snp', snpLaunch: expected})
    const a = await checkAttestationReport(ctx)
    expect(a.verdict).toBe('pass')
    expect(a.evidence).toMatch(/^ATTESTATION_REPORT version 2, policy 0x30000, VMPL 0, REPORT_DATA = the run's nonce, MEASUREMENT [0-9a-f]{96} \(configfs-tsm/)
    const m = await checkLaunchMeasurement(ctx)
    expect(m).toEqual({verdict: 'pass', evidence: `MEASUREMENT ${measurement.toString('hex')} is the digest manifest.json predicts for firmware /usr/share/ovmf/OVMF.fd, firmwareSha256 ab, vcpus 2, cpuType EPYC-Milan, guestFeatures 0x1, vmm qemu`})
  })

  it('simulated SNP guest: a measurement none of the predictions has fails, naming both', async () => {
    const guest = answering('snp', (nonce) => ({provider: 'sev_guest', report: simulatedSnpReport(nonce, measurement)}))
    const other = 'ee'.repeat(48)
    const ctx = recordedContext(guest, {mode: 'snp', snpLaunch: snpLaunchExpectation({entries: [snpEntry(other, 2)], source: 'measure.json'}, 2)})
    expect((await checkAttestationReport(ctx)).verdict).toBe('pass')
    const m = await checkLaunchMeasurement(ctx)
    expect(m.verdict).toBe('fail')
    expect(m.evidence).toBe(`MEASUREMENT ${measurement.toString('hex')} is none of the 1 digest(s) measure.json predicts: ${other} (firmware /usr/share/ovmf/OVMF.fd, firmwareSha256 ab, vcpus 2, cpuType EPYC-Milan, guestFeatures 0x1, vmm qemu)`)
  })

  it('simulated SNP guest: without a prediction, or with one for other vCPU counts only, the comparison is skipped saying why and what was measured', async () => {
    const guest = answering('snp', (nonce) => ({provider: 'sev_guest', report: simulatedSnpReport(nonce, measurement)}))
    for (const [expectation, why] of [
      [snpLaunchExpectation(undefined, 2), /^not compared: no predicted SEV-SNP launch digest: give --measurements/],
      [snpLaunchExpectation({entries: [], source: 'manifest.json'}, 2), /^not compared: manifest\.json has no SEV-SNP launch digest \(snp-launch\)/],
      [snpLaunchExpectation({entries: [snpEntry('aa'.repeat(48), 1), snpEntry('bb'.repeat(48), 2, 'gce')], source: 'm.json'}, 2), /^not compared: m\.json predicts SEV-SNP digests only for 1 vCPUs under qemu, 2 vCPUs under gce, not for this boot's 2 under QEMU/],
    ] as const) {
      const ctx = recordedContext(guest, {mode: 'snp', snpLaunch: expectation})
      await checkAttestationReport(ctx)
      const m = await checkLaunchMeasurement(ctx)
      expect(m.verdict).toBe('skip')
      expect(m.evidence).toMatch(why)
      expect(m.evidence).toContain(`(measured ${measurement.toString('hex')})`)
    }
  })

  it('simulated SNP guest: a report whose REPORT_DATA is not the nonce, a short one and one from the TDX provider fail; launch-measurement is then skipped', async () => {
    const cases: [(n: Buffer) => {provider: string; report: Buffer}, RegExp][] = [
      [() => ({provider: 'sev_guest', report: simulatedSnpReport(randomBytes(64), measurement)}), /REPORT_DATA \(0x50\) is not the run's nonce/],
      [(n) => ({provider: 'sev_guest', report: simulatedSnpReport(n, measurement).subarray(0, 0x200)}), /an SNP report is 0x4a0 bytes; got 512/],
      [(n) => ({provider: 'tdx_guest', report: simulatedSnpReport(n, measurement)}), /came from tdx_guest, not sev_guest/],
    ]
    for (const [build, why] of cases) {
      const ctx = recordedContext(answering('snp', build), {mode: 'snp'})
      const a = await checkAttestationReport(ctx)
      expect(a.verdict).toBe('fail')
      expect(a.evidence).toMatch(why)
      expect((await checkLaunchMeasurement(ctx)).evidence).toMatch(/^not run: no attestation report/)
    }
  })

  it('simulated TDX guest: a quote carrying the nonce passes (configfs-tsm or the TDREPORT ioctl); one without it fails', async () => {
    const quote = (nonce: Buffer) => Buffer.concat([randomBytes(568), nonce, randomBytes(300)])
    const ok = await checkAttestationReport(recordedContext(answering('tdx', (n) => ({provider: 'tdx_guest', report: quote(n)})), {mode: 'tdx'}))
    expect(ok).toEqual({verdict: 'pass', evidence: "932-byte report with the run's 64-byte nonce in its REPORTDATA (configfs-tsm (/sys/kernel/config/tsm/report/cvm-image-1); provider tdx_guest)"})
    const ioctl = await checkAttestationReport(recordedContext(answering('tdx', (n) => ({provider: 'tdx_guest (TDREPORT, no quote)', report: Buffer.concat([randomBytes(128), n, randomBytes(832)])}), 'ioctl on /dev/tdx_guest'), {mode: 'tdx'}))
    expect(ioctl.verdict).toBe('pass')
    const stale = await checkAttestationReport(recordedContext(answering('tdx', () => ({provider: 'tdx_guest', report: quote(randomBytes(64))})), {mode: 'tdx'}))
    expect(stale.verdict).toBe('fail')
    expect(stale.evidence).toMatch(/does not carry the run's nonce/)
  })

  it('the script\'s error lines reach the verdict: a configfs-tsm read the host refused (no quote service for TDX)', () => {
    const run = parseAttestation('method: configfs-tsm (/sys/kernel/config/tsm/report/cvm-image-9)\nprovider: tdx_guest\nerror: configfs-tsm report: od: /sys/kernel/config/tsm/report/cvm-image-9/outblob: Input/output error\n', randomBytes(64))
    expect(attestationOutcome('tdx', run)).toEqual({verdict: 'fail', evidence: 'no attestation report (configfs-tsm (/sys/kernel/config/tsm/report/cvm-image-9); provider tdx_guest): configfs-tsm report: od: /sys/kernel/config/tsm/report/cvm-image-9/outblob: Input/output error'})
  })

  it('snpMeasurement reads 48 bytes at 0x90', () => {
    const r = simulatedSnpReport(randomBytes(64), measurement)
    expect(snpMeasurement(r)).toBe(measurement.toString('hex'))
    expect(SNP_REPORT.measurement).toBe(0x90)
  })
})
