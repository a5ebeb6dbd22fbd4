import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {InputError, StageError} from '../errors.js'
import type {MeasurementEntry} from '../measure/entry.js'
import {extendPcr11Phases, PCR_BOOT_MANAGER_CODE, PCR_KERNEL_IMAGE, predictPcr11, predictPcr4, stubSections} from '../measure/pcr.js'
import {readVariableStore, UnknownVariableStoreError} from '../measure/ovmf-vars.js'
import {PCR_SECURE_BOOT_POLICY, predictPcr7} from '../measure/pcr7.js'
import type {CheckContext, Outcome, PcrExpectation} from './check-types.js'
import type {HostProcess, ValidationHost} from './host.js'
import {SWTPM_BINARY} from './host-probe.js'

// The vTPM of a validation boot, and the check that reads its PCRs from inside the guest and
// compares them with the predicted ones (docs/pcr-measurements.md "Proven on a vTPM").

/** a sockaddr_un path holds 107 bytes and its NUL */
const MAX_SOCKET_PATH = 107
const SWTPM_START_TIMEOUT_MS = 10_000

/** where a boot's swtpm listens: in its directory on the host */
export function vtpmSocket(dir: string): string {
  return join(dir, 'swtpm.sock')
}

/** A running swtpm on the validation host: QEMU connects to its control socket. */
export interface RunningVtpm {
  socket: string
  process: HostProcess
}

/**
 * Starts swtpm (TPM 2.0) for one boot, its state in dir (a fresh TPM: all PCRs at reset), and
 * waits for its control socket. `--terminate` ends it when QEMU closes the socket; the boot kills
 * it as well whatever happens.
 */
export async function startVtpm(host: ValidationHost, dir: string): Promise<RunningVtpm> {
  const socket = vtpmSocket(dir)
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) throw new StageError(`the vTPM's socket path is longer than a Unix socket allows (${MAX_SOCKET_PATH} bytes): ${socket}`, {hint: 'set TMPDIR to a shorter directory'})
  const state = join(dir, 'tpm')
  const mk = await host.exec('mkdir', ['-p', state])
  if (mk.exitCode !== 0) throw new StageError(`could not make the vTPM's state directory ${state} on ${host.label}: ${mk.stderr.trim()}`)
  const proc = host.spawn(SWTPM_BINARY, ['socket', '--tpm2', '--tpmstate', `dir=${state}`, '--ctrl', `type=unixio,path=${socket}`, '--terminate', '--log', `file=${join(dir, 'swtpm.log')},level=1`])
  let ended = false
  void proc.exited.then(() => (ended = true))
  const deadline = Date.now() + SWTPM_START_TIMEOUT_MS
  while (Date.now() < deadline) {
    if ((await host.exec('test', ['-S', socket])).exitCode === 0) return {socket, process: proc}
    if (ended) break
    await new Promise((r) => setTimeout(r, 100))
  }
  await proc.kill()
  // with --log, swtpm writes its errors to the log file rather than stderr
  const said = [proc.output(), (await host.readFile(join(dir, 'swtpm.log')))?.toString() ?? ''].join('\n').trim().split('\n').slice(-5).join(' | ')
  throw new StageError(`swtpm did not start on ${host.label}${ended ? '' : ` within ${SWTPM_START_TIMEOUT_MS / 1000} s`}: ${said || 'it said nothing'}`, {
    hint: `check that \`${SWTPM_BINARY} socket --tpm2 --tpmstate dir=/tmp/t --ctrl type=unixio,path=/tmp/t/s\` runs on ${host.label} (package swtpm)`,
  })
}

/** QEMU's arguments for the vTPM: swtpm's socket as a TPM emulator behind a CRB interface. */
export function vtpmQemuArgs(socket: string): string[] {
  return ['-chardev', `socket,id=chrtpm,path=${socket.replaceAll(',', ',,')}`, '-tpmdev', 'emulator,id=tpm0,chardev=chrtpm', '-device', 'tpm-crb,tpmdev=tpm0']
}

/** why PCR 4 is not compared in a -kernel boot */
const KERNEL_BOOT_PCR4 = "a -kernel boot: OVMF's QEMU kernel loader starts the UKI, not a boot option"

/** The boot phases systemd-pcrphase extends PCR 11 with, in order (systemd 252); an initrd with systemd adds its own two first */
const PHASES = ['sysinit', 'ready'] as const
const INITRD_PHASES = ['enter-initrd', 'leave-initrd'] as const

/**
 * The PCR values a boot of this UKI gives: PCR 11 (the UKI alone, at each phase a guest may be at
 * when it is read: a guest whose systemd has no pcrphase stays at the stub's value) and PCR 4 when
 * the firmware boots the disk itself (secureBoot: the SMM firmware with Secure Boot on). A -kernel
 * boot is started by OVMF's QEMU loader, whose events are not the boot manager's: PCR 4 is not
 * predicted there.
 */
export function expectedPcrs(uki: Buffer, boot: {firmwareBootsDisk: boolean; secureBoot: boolean}, store: {path: string; bytes?: Buffer}): PcrExpectation {
  const sections = stubSections(uki)
  const stub = predictPcr11(sections)
  const phases = [...(sections['.initrd'] ? INITRD_PHASES : []), ...PHASES]
  const pcr11 = [{phase: 'stub', value: stub.value}, ...phases.map((_, i) => ({phase: phases.slice(0, i + 1).join(':'), value: extendPcr11Phases(stub, phases.slice(0, i + 1)).value}))]
  const pcr4 = boot.firmwareBootsDisk
    ? {value: predictPcr4(uki, {secureBoot: boot.secureBoot}).value, secureBoot: boot.secureBoot}
    : {notPredicted: KERNEL_BOOT_PCR4}
  let pcr7: PcrExpectation['pcr7']
  if (!store.bytes) pcr7 = {notPredicted: `the variable store ${store.path} could not be read`}
  else {
    try {
      const r = predictPcr7(readVariableStore(store.bytes, store.path), {secureBoot: boot.secureBoot, uki})
      pcr7 = 'prediction' in r ? {value: r.prediction.value, secureBoot: boot.secureBoot} : {notPredicted: r.notPredicted}
    } catch (e) {
      // a store the reader does not know (another firmware's layout) leaves PCR 7 unpredicted; any other error fails the check
      pcr7 = e instanceof UnknownVariableStoreError ? {notPredicted: e.message} : {error: (e as Error).message}
    }
  }
  return {pcr11, pcr4, pcr7}
}

/** TPM2_PCR_Read of the SHA-256 bank, PCRs 4, 7 and 11 (TPM 2.0 Library, Part 3, 22.4) */
export const PCR_READ_COMMAND = Buffer.from([
  0x80, 0x01, // TPM_ST_NO_SESSIONS
  0x00, 0x00, 0x00, 0x14, // commandSize: 20
  0x00, 0x00, 0x01, 0x7e, // TPM_CC_PCR_Read
  0x00, 0x00, 0x00, 0x01, // TPML_PCR_SELECTION.count
  0x00, 0x0b, // TPM_ALG_SHA256
  0x03, // sizeofSelect
  (1 << PCR_BOOT_MANAGER_CODE) | (1 << PCR_SECURE_BOOT_POLICY), 1 << (PCR_KERNEL_IMAGE - 8), 0x00,
])

/**
 * The guest side: once systemd has no systemd-pcrphase job left, the kernel's TPM device (the
 * resource manager when it has one, 4.12 and later), the command written in one write(2) and the
 * response read back, as hex. No tool the image
 * lacks: dd and od are coreutils. /sys/class/tpm/tpm0/pcr-sha256/ exists from 5.12 only.
 */
export const PCR_READ_SCRIPT = `d=
# systemd-pcrphase extends PCR 11 as the boot goes on: read it once none of its jobs is waiting (60 s at most)
if command -v systemctl >/dev/null; then
  i=0; while [ $i -lt 60 ] && systemctl list-jobs --no-legend 2>/dev/null | grep -q systemd-pcrphase; do sleep 1; i=$((i+1)); done
fi
for t in /dev/tpmrm0 /dev/tpm0; do [ -c $t ] && { d=$t; break; }; done
[ -n "$d" ] || { echo "no TPM device: $(ls -d /dev/tpm* /sys/class/tpm/* 2>&1 | tr '\\n' ' ')"; exit 3; }
exec 3<>$d || exit 4
dd bs=${PCR_READ_COMMAND.length} count=1 iflag=fullblock status=none >&3 || exit 5
echo "device $d"
od -An -tx1 -v <&3
`

/** The PCR values (lower-case hex) a TPM2_PCR_Read response gives, by PCR index; a response that is not one is a StageError (the check reports it as a fail). */
export function parsePcrReadResponse(res: Buffer): Map<number, string> {
  if (res.length < 10) throw new StageError(`a TPM response of ${res.length} bytes, shorter than its header`)
  const size = res.readUInt32BE(2)
  const rc = res.readUInt32BE(6)
  if (rc !== 0) throw new StageError(`TPM2_PCR_Read failed: response code 0x${rc.toString(16).padStart(8, '0')}`)
  if (size !== res.length) throw new StageError(`the TPM response says ${size} bytes, ${res.length} came`)
  let o = 14 // header, pcrUpdateCounter
  const selections = res.readUInt32BE(o)
  o += 4
  const pcrs: number[] = []
  for (let s = 0; s < selections; s++) {
    const alg = res.readUInt16BE(o)
    const n = res[o + 2]
    for (let b = 0; b < n * 8; b++) if (res[o + 3 + (b >> 3)] & (1 << (b & 7))) pcrs.push(alg === 0x000b ? b : -1)
    o += 3 + n
  }
  const count = res.readUInt32BE(o)
  o += 4
  if (count !== pcrs.length) throw new StageError(`the TPM returned ${count} digests for ${pcrs.length} selected PCRs`)
  const values = new Map<number, string>()
  for (const pcr of pcrs) {
    const len = res.readUInt16BE(o)
    if (pcr >= 0) values.set(pcr, res.subarray(o + 2, o + 2 + len).toString('hex'))
    o += 2 + len
  }
  return values
}

const short = (v: string) => v.slice(0, 16)

/** How tpm-pcrs's evidence says a PCR read from the vTPM equals its prediction; "(phase …)" or "(Secure Boot …)" follows. A release's manifest reads its proofs by it. */
export function pcrMatchedText(pcr: number, value: string): string {
  return `PCR ${pcr} ${value} = predicted`
}

/**
 * The guest's PCRs 11, 4 and 7 (SHA-256 bank) equal the values predicted from the UKI and the
 * boot's variable store. Evidence gives each PCR's measured and predicted value; a mismatch names
 * the PCR. A PCR that cannot be predicted for the boot is reported with why, not compared.
 */
export async function checkTpmPcrs(ctx: CheckContext): Promise<Outcome> {
  const tpm = ctx.tpm
  if (!tpm) return {verdict: 'skip', evidence: 'no vTPM in this boot'}
  if ('notAttached' in tpm) return {verdict: 'skip', evidence: `no vTPM in this boot: ${tpm.notAttached}`}
  const r = await ctx.guest.exec(['sh', '-c', PCR_READ_SCRIPT], {timeoutMs: ctx.timeoutMs, stdin: PCR_READ_COMMAND})
  const [deviceLine = '', ...hex] = r.stdout.trim().split('\n')
  if (r.exitCode !== 0 || !deviceLine.startsWith('device ')) return {verdict: 'fail', evidence: `could not read the guest's PCRs (exit ${r.exitCode}): ${(r.stdout + r.stderr).trim()}`}
  let values: Map<number, string>
  try {
    values = parsePcrReadResponse(Buffer.from(hex.join('').replace(/\s+/g, ''), 'hex'))
  } catch (e) {
    return {verdict: 'fail', evidence: `${deviceLine}: ${(e as Error).message}`}
  }
  return pcrOutcome(values, tpm.expected, deviceLine.slice('device '.length))
}

/** Pure: the verdict from the PCRs read and the expectation. */
export function pcrOutcome(values: Map<number, string>, exp: PcrExpectation, device: string): Outcome {
  const pcr11 = values.get(PCR_KERNEL_IMAGE)
  const failed: string[] = []
  const errored: string[] = []
  const parts: string[] = []
  const at = exp.pcr11.find((e) => e.value === pcr11)
  if (at) parts.push(`${pcrMatchedText(PCR_KERNEL_IMAGE, at.value)} (phase ${at.phase})`)
  else {
    failed.push('PCR 11')
    parts.push(`PCR 11 ${pcr11 ?? 'not returned'}, predicted ${exp.pcr11.map((e) => `${e.phase} ${short(e.value)}`).join(' / ')}`)
  }
  // PCR 4 and PCR 7: one predicted value for the boot's Secure Boot state, or why there is none
  for (const [pcr, e] of [[PCR_BOOT_MANAGER_CODE, exp.pcr4], [PCR_SECURE_BOOT_POLICY, exp.pcr7]] as const) {
    const got = values.get(pcr)
    if ('error' in e) {
      errored.push(`PCR ${pcr}`)
      parts.push(`PCR ${pcr} ${got ?? 'not returned'} (no prediction, because of an error: ${e.error})`)
    } else if ('notPredicted' in e) parts.push(`PCR ${pcr} ${got ?? 'not returned'} (not predicted: ${e.notPredicted})`)
    else if (got === e.value) parts.push(`${pcrMatchedText(pcr, got)} (Secure Boot ${e.secureBoot ? 'on' : 'off'})`)
    else {
      failed.push(`PCR ${pcr}`)
      parts.push(`PCR ${pcr} ${got ?? 'not returned'}, predicted ${e.value} (Secure Boot ${e.secureBoot ? 'on' : 'off'})`)
    }
  }
  const evidence = `${device}, SHA-256 bank: ${parts.join('; ')}`
  if (failed.length === 0 && errored.length === 0) return {verdict: 'pass', evidence}
  const named = (l: string[]) => (l.length > 1 ? `${l.slice(0, -1).join(', ')} and ${l[l.length - 1]}` : l[0])
  const heads = [...(failed.length ? [`${named(failed)} ${failed.length > 1 ? 'differ' : 'differs'} from the prediction`] : []), ...(errored.length ? [`${named(errored)} could not be predicted`] : [])]
  return {verdict: 'fail', evidence: `${heads.join('; ')}: ${evidence}`}
}

/** The PCR entries of a release (manifest.json's measurements.entries, or `cvm-image measure --json`'s measurements), as the check's expectation for one boot. */
export function expectedPcrsFrom(entries: readonly MeasurementEntry[], boot: {firmwareBootsDisk: boolean; secureBoot: boolean}, source: string): PcrExpectation {
  const pcr11 = entries.filter((e) => e.kind === 'tpm-pcr11').map((e) => ({phase: String(e.params.phase ?? 'unnamed'), value: e.value}))
  if (pcr11.length === 0) throw new InputError(`${source} lists no PCR 11 (kind tpm-pcr11) to compare with`, {hint: 'give the manifest.json of a release, or the output of `cvm-image measure <disk> --json`'})
  const sb = boot.secureBoot ? 'on' : 'off'
  const pcr4 = entries.find((e) => e.kind === 'tpm-pcr4' && e.params.secureBoot === sb)
  const pcr7 = entries.find((e) => e.kind === 'tpm-pcr7' && e.params.secureBoot === sb)
  return {
    pcr7: pcr7 ? {value: pcr7.value, secureBoot: boot.secureBoot} : {notPredicted: `${source} lists no PCR 7 for Secure Boot ${sb}`},
    pcr11,
    pcr4: !boot.firmwareBootsDisk
      ? {notPredicted: KERNEL_BOOT_PCR4}
      : pcr4
        ? {value: pcr4.value, secureBoot: boot.secureBoot}
        : {notPredicted: `${source} lists no PCR 4 for Secure Boot ${sb}`},
  }
}

/** A release's expected measurements as `validate --measurements` reads them: the entries, and the raw disk's sha256 when the file gives one. */
export interface ReleaseExpectation {
  entries: MeasurementEntry[]
  /** manifest.json's disk.sha256, or `measure --json`'s subject.diskSha256 (a build's disk); absent for `measure --json` of a disk file */
  diskSha256?: string
}

/**
 * The release-disk check: the PCRs cover the UKI only, so the disk's own sha256 is compared with the
 * release's to cover the root filesystem; a file without one says plainly that it is not covered.
 */
export function releaseDiskOutcome(diskSha256: string, release: {diskSha256?: string; source: string}): Outcome {
  if (!release.diskSha256) {
    return {verdict: 'skip', evidence: `${release.source} gives no disk sha256 (\`measure --json\` of a disk file): the PCRs compared cover the UKI only; the root filesystem is not covered`}
  }
  if (release.diskSha256 !== diskSha256) {
    return {verdict: 'fail', evidence: `the disk's sha256 ${diskSha256} is not the release's ${release.diskSha256} (${release.source}): it is not the released disk, whatever its PCRs show (they cover the UKI only)`}
  }
  return {verdict: 'pass', evidence: `the disk's sha256 ${diskSha256} = the release's (${release.source}): every byte, the root filesystem included, is the released disk's`}
}

/**
 * Reads the expected measurements a release gives: manifest.json (measurements.entries, disk.sha256)
 * or the output of `cvm-image measure --json` (measurements, subject.diskSha256). Only the fields the check uses are required.
 */
export async function readMeasurementsFile(path: string): Promise<ReleaseExpectation> {
  let doc: unknown
  try {
    doc = JSON.parse(await readFile(path, 'utf8'))
  } catch (e) {
    throw new InputError(`cannot read ${path} as JSON: ${(e as Error).message}`, {hint: 'give the manifest.json of a release, or the output of `cvm-image measure <disk> --json`'})
  }
  const d = doc as {measurements?: unknown; disk?: {sha256?: unknown}; subject?: {diskSha256?: unknown}}
  const list = Array.isArray(d.measurements) ? d.measurements : (d.measurements as {entries?: unknown} | undefined)?.entries
  const ok = (e: unknown): e is MeasurementEntry => {
    const x = e as Partial<MeasurementEntry> | null
    return typeof x?.kind === 'string' && typeof x.value === 'string' && /^[0-9a-f]{64}$/.test(x.value) && typeof x.params === 'object' && x.params !== null
  }
  if (!Array.isArray(list) || !list.every(ok)) {
    throw new InputError(`${path} has no list of measurements (measurements.entries of a manifest, or measurements of \`cvm-image measure --json\`), each with kind, a SHA-256 value and params`, {
      hint: 'give the manifest.json of a release made by this cvm-image, or the output of `cvm-image measure <disk> --json`',
    })
  }
  const disk = d.disk?.sha256 ?? d.subject?.diskSha256
  if (disk !== undefined && (typeof disk !== 'string' || !/^[0-9a-f]{64}$/.test(disk))) throw new InputError(`${path} gives a disk sha256 that is not one: ${JSON.stringify(disk)}`)
  return {entries: list, diskSha256: disk}
}
