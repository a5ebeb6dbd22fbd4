import {createHash} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {connect} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {buildUki} from '../disk/uki.js'
import {enrollCertificate, readVariableStore} from '../measure/ovmf-vars.js'
import {extendPcr, predictPcr4} from '../measure/pcr.js'
import {predictPcr7} from '../measure/pcr7.js'
import {run} from '../util/exec.js'
import {LocalHost} from './host.js'
import {OVMF_VARS, OVMF_VARS_SNAKEOIL, SNAKEOIL_CERT} from './host-probe.js'
import {InputError} from '../errors.js'
import type {MeasurementEntry} from '../measure/entry.js'
import {expectedPcrs, expectedPcrsFrom, parsePcrReadResponse, pcrOutcome, PCR_READ_COMMAND, readMeasurementsFile, releaseDiskOutcome, startVtpm} from './vtpm.js'

const sha256 = (s: string) => createHash('sha256').update(s).digest()

/** One TPM command over swtpm's command socket, its whole response back. */
function transmit(socket: string, command: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = connect(socket)
    let got = Buffer.alloc(0)
    s.on('connect', () => s.write(command))
    s.on('data', (d) => {
      got = Buffer.concat([got, d])
      if (got.length >= 6 && got.length >= got.readUInt32BE(2)) {
        s.end()
        resolve(got)
      }
    })
    s.on('error', reject)
  })
}

/** TPM2_PCR_Extend of one SHA-256 digest, with the empty password session (Part 3, 22.2) */
function pcrExtend(pcr: number, digest: Buffer): Buffer {
  const body = Buffer.concat([
    Buffer.from([0, 0, 0, pcr]),
    Buffer.from([0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 0, 0, 0]), // authorizationSize 9: TPM_RS_PW, no nonce, no attributes, empty hmac
    Buffer.from([0, 0, 0, 1, 0, 0x0b]),
    digest,
  ])
  const head = Buffer.alloc(10)
  head.writeUInt16BE(0x8002, 0)
  head.writeUInt32BE(10 + body.length, 2)
  head.writeUInt32BE(0x182, 6)
  return Buffer.concat([head, body])
}

describe('the PCR read against a real TPM 2.0 (swtpm)', () => {
  let dir: string
  let swtpm: ReturnType<LocalHost['spawn']>
  const host = new LocalHost()
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cvm-vtpm-test-'))
    await run('mkdir', ['-p', join(dir, 'state')])
    // a command socket this test talks to, as the guest's kernel would through QEMU; startup done by swtpm itself
    swtpm = host.spawn('swtpm', ['socket', '--tpm2', '--tpmstate', `dir=${join(dir, 'state')}`, '--server', `type=unixio,path=${join(dir, 'cmd.sock')}`, '--ctrl', `type=unixio,path=${join(dir, 'ctrl.sock')}`, '--flags', 'not-need-init,startup-clear'])
    for (let i = 0; i < 100 && (await host.exec('test', ['-S', join(dir, 'cmd.sock')])).exitCode !== 0; i++) await new Promise((r) => setTimeout(r, 100))
  }, 30_000)
  afterAll(async () => {
    await swtpm?.kill()
    await rm(dir, {recursive: true, force: true})
  })

  it('reads PCRs 4, 7 and 11 of the SHA-256 bank, each where it belongs', async () => {
    const d4 = sha256('a boot application')
    const d11a = sha256('.linux')
    const d11b = sha256('sysinit')
    for (const [pcr, d] of [[4, d4], [11, d11a], [11, d11b]] as const) {
      const r = await transmit(join(dir, 'cmd.sock'), pcrExtend(pcr, d))
      expect(r.readUInt32BE(6), `TPM2_PCR_Extend of PCR ${pcr}`).toBe(0)
    }
    const values = parsePcrReadResponse(await transmit(join(dir, 'cmd.sock'), PCR_READ_COMMAND))
    const zero = Buffer.alloc(32)
    expect([...values.keys()]).toEqual([4, 7, 11])
    expect(values.get(4)).toBe(extendPcr(zero, d4).toString('hex'))
    expect(values.get(7)).toBe(zero.toString('hex'))
    expect(values.get(11)).toBe(extendPcr(extendPcr(zero, d11a), d11b).toString('hex'))
  })

  it('a response with an error code, or cut short, is refused saying which', async () => {
    // TPM_RC_VALUE with a parameter number, as a TPM answers a selection it cannot read
    expect(() => parsePcrReadResponse(Buffer.from('80010000000a000001c4', 'hex'))).toThrow(/response code 0x000001c4/)
    const good = await transmit(join(dir, 'cmd.sock'), PCR_READ_COMMAND)
    expect(() => parsePcrReadResponse(good.subarray(0, good.length - 1))).toThrow(/says \d+ bytes/)
  })

  it('startVtpm refuses a socket path longer than a Unix socket takes, and a state directory it cannot make, saying which', async () => {
    await expect(startVtpm(host, join(dir, 'x'.repeat(120)))).rejects.toThrow(/longer than a Unix socket allows \(107 bytes\)/)
    await writeFile(join(dir, 'a-file'), '')
    await expect(startVtpm(host, join(dir, 'a-file'))).rejects.toThrow(/could not make the vTPM's state directory .*a-file\/tpm on local/)
  })

  it('startVtpm starts swtpm for QEMU and waits for its control socket', async () => {
    const bootDir = join(dir, 'boot')
    await run('mkdir', ['-p', bootDir])
    const vtpm = await startVtpm(host, bootDir)
    try {
      expect((await host.exec('test', ['-S', vtpm.socket])).exitCode).toBe(0)
    } finally {
      await vtpm.process.kill()
    }
  })
})

/** the variable store validation's boots without Secure Boot start with */
const plainStore = () => ({path: OVMF_VARS, bytes: readFileSync(OVMF_VARS)})

describe('expected PCRs and the verdict', () => {
  let dir: string
  let uki: Buffer
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cvm-vtpm-uki-'))
    // a stand-in kernel: the stub's own PE image (what .linux holds does not matter to PCR 11)
    await writeFile(join(dir, 'cmdline'), 'console=ttyS0 root=/dev/nvme0n1p2')
    await writeFile(join(dir, 'osrel'), 'ID=debian\n')
    await writeFile(join(dir, 'initrd'), 'an initrd')
    await run('cp', ['/usr/lib/systemd/boot/efi/linuxx64.efi.stub', join(dir, 'linux')])
    await buildUki({vmlinuz: join(dir, 'linux'), cmdlineFile: join(dir, 'cmdline'), osReleaseFile: join(dir, 'osrel'), initrd: join(dir, 'initrd')}, join(dir, 'uki.efi'), {sourceDateEpoch: 1_700_000_000})
    uki = await readFile(join(dir, 'uki.efi'))
  }, 60_000)
  afterAll(() => rm(dir, {recursive: true, force: true}))

  /** PCR 11 as systemd-measure (Debian 12's systemd) calculates it, at a phase */
  async function systemdMeasure(phase: string): Promise<string> {
    const files = ['linux', 'osrel', 'cmdline', 'initrd'].map((n) => `--${n}=${join(dir, n)}`)
    const r = await run('/usr/lib/systemd/systemd-measure', ['calculate', ...files, '--bank=sha256', `--phase=${phase}`])
    return /^11:sha256=([0-9a-f]{64})$/m.exec(r.stdout)![1]
  }

  it('PCR 11 at every phase a guest may be at equals systemd-measure; PCR 4 only where the firmware boots the disk', async () => {
    const disk = expectedPcrs(uki, {firmwareBootsDisk: true, secureBoot: false}, plainStore())
    expect(disk.pcr11.map((e) => e.phase)).toEqual(['stub', 'enter-initrd', 'enter-initrd:leave-initrd', 'enter-initrd:leave-initrd:sysinit', 'enter-initrd:leave-initrd:sysinit:ready'])
    for (const e of disk.pcr11) expect(e.value, `phase ${e.phase}`).toBe(await systemdMeasure(e.phase === 'stub' ? ':' : e.phase))
    expect(disk.pcr4).toEqual({value: predictPcr4(uki, {secureBoot: false}).value, secureBoot: false})
    const off = predictPcr7(readVariableStore(plainStore().bytes), {secureBoot: false})
    expect(disk.pcr7).toEqual({value: 'prediction' in off ? off.prediction.value : off.notPredicted, secureBoot: false})
    const sb = expectedPcrs(uki, {firmwareBootsDisk: true, secureBoot: true}, {path: OVMF_VARS_SNAKEOIL, bytes: await readFile(OVMF_VARS_SNAKEOIL)})
    expect(sb.pcr4).toEqual({value: predictPcr4(uki, {secureBoot: true}).value, secureBoot: true})
    // this UKI is unsigned: no db entry verifies it, so the firmware would refuse it and PCR 7 has no value to predict
    expect(sb.pcr7).toMatchObject({notPredicted: expect.stringMatching(/db holds neither/)})
    expect(expectedPcrs(uki, {firmwareBootsDisk: false, secureBoot: false}, plainStore()).pcr4).toMatchObject({notPredicted: expect.stringMatching(/-kernel/)})
    expect(expectedPcrs(uki, {firmwareBootsDisk: true, secureBoot: false}, {path: '/nowhere/OVMF_VARS.fd'}).pcr7).toEqual({notPredicted: 'the variable store /nowhere/OVMF_VARS.fd could not be read'})
    expect(expectedPcrs(uki, {firmwareBootsDisk: true, secureBoot: false}, {path: 'zeros.fd', bytes: Buffer.alloc(8192)}).pcr7).toMatchObject({notPredicted: expect.stringMatching(/^zeros.fd is not an OVMF variable store/)})
  })

  it('a PCR 7 that an error kept from being predicted (a damaged store of the known layout) fails the check; an unknown store is "not predicted"', () => {
    const enrolled = enrollCertificate(readFileSync(OVMF_VARS), readFileSync(SNAKEOIL_CERT, 'utf8'), OVMF_VARS)
    // the first variable's DataSize made larger than the store: the layout is OVMF's, its contents broken
    const damaged = Buffer.from(enrolled)
    const first = damaged.readUInt16LE(48) + 28
    expect(damaged.readUInt16LE(first)).toBe(0x55aa)
    damaged.writeUInt32LE(0x7fffffff, first + 40)
    const exp = expectedPcrs(uki, {firmwareBootsDisk: true, secureBoot: false}, {path: 'damaged.fd', bytes: damaged})
    expect(exp.pcr7).toMatchObject({error: expect.stringMatching(/^damaged.fd is a damaged OVMF variable store/)})
    if ('notPredicted' in exp.pcr4 || 'error' in exp.pcr4) throw new Error('PCR 4 is predicted for a disk boot')
    const seven = 'ab'.repeat(32)
    const o = pcrOutcome(new Map([[4, exp.pcr4.value], [7, seven], [11, exp.pcr11[0].value]]), exp, '/dev/tpmrm0')
    expect(o.verdict).toBe('fail')
    expect(o.evidence).toMatch(/^PCR 7 could not be predicted: \/dev\/tpmrm0/)
    expect(o.evidence).toContain(`PCR 7 ${seven} (no prediction, because of an error: damaged.fd is a damaged OVMF variable store`)
    const unknown = expectedPcrs(uki, {firmwareBootsDisk: true, secureBoot: false}, {path: 'zeros.fd', bytes: Buffer.alloc(8192)})
    expect(pcrOutcome(new Map([[4, exp.pcr4.value], [7, seven], [11, exp.pcr11[0].value]]), unknown, '/dev/tpmrm0')).toMatchObject({verdict: 'pass', evidence: expect.stringContaining(`PCR 7 ${seven} (not predicted: zeros.fd is not an OVMF variable store`)})
  })

  it('passes when PCR 4 and 11 match, naming the phase; a mismatch names each PCR with both values', () => {
    const exp = expectedPcrs(uki, {firmwareBootsDisk: true, secureBoot: false}, plainStore())
    if ('notPredicted' in exp.pcr4 || 'error' in exp.pcr4 || 'notPredicted' in exp.pcr7 || 'error' in exp.pcr7) throw new Error('PCR 4 and 7 are predicted for a disk boot')
    const seven = 'ab'.repeat(32)
    const ok = pcrOutcome(new Map([[4, exp.pcr4.value], [7, exp.pcr7.value], [11, exp.pcr11[4].value]]), exp, '/dev/tpmrm0')
    expect(ok.verdict).toBe('pass')
    expect(ok.evidence).toContain(`PCR 7 ${exp.pcr7.value} = predicted (Secure Boot off)`)
    expect(ok.evidence).toContain(`PCR 11 ${exp.pcr11[4].value} = predicted (phase enter-initrd:leave-initrd:sysinit:ready)`)
    expect(ok.evidence).toContain(`PCR 4 ${exp.pcr4.value} = predicted (Secure Boot off)`)
    const other = 'cd'.repeat(32)
    const bad = pcrOutcome(new Map([[4, other], [7, seven], [11, other]]), exp, '/dev/tpmrm0')
    expect(bad.verdict).toBe('fail')
    expect(bad.evidence).toMatch(/^PCR 11, PCR 4 and PCR 7 differ from the prediction/)
    expect(bad.evidence).toContain(`PCR 7 ${seven}, predicted ${exp.pcr7.value} (Secure Boot off)`)
    expect(bad.evidence).toContain(`PCR 4 ${other}, predicted ${exp.pcr4.value}`)
    expect(pcrOutcome(new Map([[4, exp.pcr4.value], [7, exp.pcr7.value], [11, other]]), exp, '/dev/tpm0').evidence).toMatch(/^PCR 11 differs from the prediction/)
  })
})

describe("a release's measurements as the expectation (validate --measurements)", () => {
  const h = (c: string) => c.repeat(64)
  const e = (kind: MeasurementEntry['kind'], value: string, params: Record<string, string | number>): MeasurementEntry => ({kind, value, algorithm: 'sha256', dependsOn: ['uki'], params, description: ''})
  const entries = [e('tpm-pcr11', h('1'), {phase: 'stub'}), e('tpm-pcr11', h('2'), {phase: 'sysinit:ready'}), e('tpm-pcr4', h('3'), {secureBoot: 'off'}), e('tpm-pcr7', h('5'), {secureBoot: 'off'}), e('sev-launch', h('4'), {firmware: '/f'})]
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cvm-vtpm-file-'))
  })
  afterAll(() => rm(dir, {recursive: true, force: true}))

  it("reads a manifest's measurements.entries and measure --json's measurements alike; PCR 4 and 7 for the boot's Secure Boot state only", async () => {
    await writeFile(join(dir, 'manifest.json'), JSON.stringify({schema: 'cvm-image/manifest/v1', measurements: {entries, notes: []}}))
    await writeFile(join(dir, 'measure.json'), JSON.stringify({subject: {kind: 'disk', path: '/d'}, measurements: entries, notes: []}))
    expect(await readMeasurementsFile(join(dir, 'manifest.json'))).toEqual({entries, diskSha256: undefined})
    expect(await readMeasurementsFile(join(dir, 'measure.json'))).toEqual({entries, diskSha256: undefined})
    expect(expectedPcrsFrom(entries, {firmwareBootsDisk: true, secureBoot: false}, 'm.json')).toEqual({pcr11: [{phase: 'stub', value: h('1')}, {phase: 'sysinit:ready', value: h('2')}], pcr4: {value: h('3'), secureBoot: false}, pcr7: {value: h('5'), secureBoot: false}})
    expect(expectedPcrsFrom(entries, {firmwareBootsDisk: true, secureBoot: true}, 'm.json')).toMatchObject({pcr4: {notPredicted: 'm.json lists no PCR 4 for Secure Boot on'}, pcr7: {notPredicted: 'm.json lists no PCR 7 for Secure Boot on'}})
    expect(() => expectedPcrsFrom(entries.slice(2), {firmwareBootsDisk: true, secureBoot: false}, 'm.json')).toThrow(/m.json lists no PCR 11/)
  })

  it("a manifest's disk sha256 is compared with the disk's: another disk fails naming both; measure --json of a disk file says the root filesystem is not covered", async () => {
    const released = sha256('released disk').toString('hex')
    await writeFile(join(dir, 'release.json'), JSON.stringify({schema: 'cvm-image/manifest/v1', disk: {sha256: released}, measurements: {entries, notes: []}}))
    await writeFile(join(dir, 'build.json'), JSON.stringify({subject: {kind: 'build', recipeId: 'debian-12', diskSha256: released}, measurements: entries, notes: []}))
    await writeFile(join(dir, 'disk.json'), JSON.stringify({subject: {kind: 'disk', path: '/d'}, measurements: entries, notes: []}))
    const release = {...(await readMeasurementsFile(join(dir, 'release.json'))), source: 'release.json'}
    expect(release.diskSha256).toBe(released)
    expect((await readMeasurementsFile(join(dir, 'build.json'))).diskSha256).toBe(released)
    // the same UKI, so the same PCRs, on a disk whose root filesystem changed: only its sha256 tells
    const changed = sha256('root filesystem changed').toString('hex')
    const o = releaseDiskOutcome(changed, release)
    expect(o.verdict).toBe('fail')
    expect(o.evidence).toContain(changed)
    expect(o.evidence).toContain(released)
    expect(releaseDiskOutcome(released, release)).toMatchObject({verdict: 'pass', evidence: expect.stringContaining('the root filesystem included')})
    const notCovered = releaseDiskOutcome(changed, {...(await readMeasurementsFile(join(dir, 'disk.json'))), source: 'disk.json'})
    expect(notCovered).toEqual({verdict: 'skip', evidence: expect.stringMatching(/^disk.json gives no disk sha256 .*the root filesystem is not covered$/)})
    await writeFile(join(dir, 'short.json'), JSON.stringify({disk: {sha256: 'abc'}, measurements: entries}))
    await expect(readMeasurementsFile(join(dir, 'short.json'))).rejects.toThrow(/short.json gives a disk sha256 that is not one/)
  })

  it('refuses a file that is not JSON, or has no measurement list, naming the file (exit 2)', async () => {
    await writeFile(join(dir, 'bad.json'), '{"measurements": [{"kind": "tpm-pcr11", "value": "not hex"}]}')
    await writeFile(join(dir, 'text.json'), 'PCR 11: abc')
    for (const f of ['bad.json', 'text.json']) {
      const err = await readMeasurementsFile(join(dir, f)).catch((x: unknown) => x)
      expect(err).toBeInstanceOf(InputError)
      expect((err as InputError).message).toContain(join(dir, f))
    }
  })
})
