import {randomBytes} from 'node:crypto'

import type {MeasurementEntry} from '../measure/entry.js'
import type {AttestationRun, CheckContext, Outcome, SnpLaunchExpectation} from './check-types.js'

// The attestation checks of the snp and tdx boots (docs/validation-modes.md "In the guest"): the
// guest takes a report bound to a fresh 64-byte nonce, and for SNP the report's MEASUREMENT is the
// predicted launch digest (`cvm-image measure --mode snp`).

const pass = (evidence: string): Outcome => ({verdict: 'pass', evidence})
const fail = (evidence: string): Outcome => ({verdict: 'fail', evidence})
const skip = (evidence: string): Outcome => ({verdict: 'skip', evidence})

/** what the guest puts in a report's REPORT_DATA (configfs-tsm's inblob) */
export const NONCE_BYTES = 64

/**
 * The SEV-SNP ATTESTATION_REPORT (SNP firmware ABI, "ATTESTATION_REPORT Structure"): VERSION at 0,
 * POLICY at 0x08, VMPL at 0x30, REPORT_DATA (the nonce) at 0x50, MEASUREMENT (the launch digest,
 * SHA-384) at 0x90; 0x4a0 bytes with the signature. configfs-tsm's outblob is this structure;
 * /dev/sev-guest's SNP_GET_REPORT answer holds it after a 32-byte header (status, report_size).
 */
export const SNP_REPORT = {policy: 0x08, vmpl: 0x30, reportData: 0x50, measurement: 0x90, measurementBytes: 48, bytes: 0x4a0} as const

/** configfs-tsm's provider names (the drivers' module names) */
const PROVIDER = {snp: 'sev_guest', tdx: 'tdx_guest'} as const

/**
 * The guest side, for a stock Debian userspace: configfs-tsm (6.7+: mkdir a report, write the nonce
 * to inblob, read outblob and provider) with sh and od alone; before 6.7, the drivers' ioctls
 * (/dev/sev-guest SNP_GET_REPORT, /dev/tdx_guest TDX_CMD_GET_REPORT0) through python3, which every
 * image validation boots has (cloud-init runs on it). The nonce comes on stdin.
 */
export function attestationScript(): string {
  return `set -u
modprobe sev-guest 2>/dev/null; modprobe tdx-guest 2>/dev/null
W=\${CVM_ATTEST_DIR:-/run}
N=$W/cvm-attest.nonce
head -c ${NONCE_BYTES} > $N
[ -d /sys/kernel/config/tsm ] || mount -t configfs configfs /sys/kernel/config 2>/dev/null
T=/sys/kernel/config/tsm/report
if [ -d $T ]; then
  d=$T/cvm-image-$$
  if mkdir $d 2>$W/cvm-attest.err; then
    echo "method: configfs-tsm ($d)"
    echo "provider: $(cat $d/provider 2>&1)"
    if cat $N > $d/inblob 2>$W/cvm-attest.err && od -An -tx1 -v $d/outblob > $W/cvm-attest.hex 2>$W/cvm-attest.err; then
      echo "report: $(tr -d ' \\n' < $W/cvm-attest.hex)"
    else
      echo "error: configfs-tsm report: $(cat $W/cvm-attest.err)"
    fi
    rmdir $d
    rm -f $N $W/cvm-attest.hex $W/cvm-attest.err
    exit 0
  fi
  echo "note: mkdir $d: $(cat $W/cvm-attest.err)"
fi
for dev in /dev/sev-guest /dev/tdx_guest; do
  [ -e $dev ] || continue
  echo "method: ioctl on $dev (no configfs-tsm: a kernel before 6.7)"
  cat > $W/cvm-attest.py <<'PYEOF'
${IOCTL_PY}PYEOF
  python3 $W/cvm-attest.py $dev < $N 2>&1
  rm -f $N $W/cvm-attest.py $W/cvm-attest.err
  exit 0
done
rm -f $N $W/cvm-attest.err
echo "error: no configfs-tsm report directory ($T) and no /dev/sev-guest or /dev/tdx_guest (CONFIG_TSM_REPORTS, SEV_GUEST, TDX_GUEST_DRIVER)"
`
}

/**
 * SNP_GET_REPORT = _IOWR('S', 0, struct snp_guest_request_ioctl) (32 bytes: msg_version, req_data,
 * resp_data, exitinfo2), the request struct snp_report_req (user_data[64], vmpl, rsvd[28]), the
 * answer 4000 bytes; TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req) (reportdata[64],
 * tdreport[1024]). include/uapi/linux/sev-guest.h, tdx-guest.h.
 */
const IOCTL_PY = `import ctypes, fcntl, os, struct, sys
dev = sys.argv[1]
nonce = sys.stdin.buffer.read(${NONCE_BYTES})
fd = os.open(dev, os.O_RDWR)
if dev.endswith('sev-guest'):
    print('provider: sev_guest')
    req = ctypes.create_string_buffer(nonce + bytes(32), 96)
    resp = ctypes.create_string_buffer(4000)
    arg = bytearray(struct.pack('<B7xQQQ', 1, ctypes.addressof(req), ctypes.addressof(resp), 0))
    try:
        fcntl.ioctl(fd, 0xC0205300, arg)
    except OSError as e:
        fw, vmm = struct.unpack_from('<II', arg, 24)
        print('error: SNP_GET_REPORT: %s (fw_error 0x%x, vmm_error 0x%x)' % (e, fw, vmm))
        sys.exit(0)
    status, size = struct.unpack_from('<II', resp.raw, 0)
    if status:
        print('error: SNP_GET_REPORT: firmware status 0x%x' % status)
        sys.exit(0)
    print('report: ' + resp.raw[32:32 + size].hex())
else:
    print('provider: tdx_guest (TDREPORT, no quote)')
    buf = bytearray(nonce + bytes(1024))
    try:
        fcntl.ioctl(fd, 0xC4405401, buf)
    except OSError as e:
        print('error: TDX_CMD_GET_REPORT0: %s' % e)
        sys.exit(0)
    print('report: ' + bytes(buf[${NONCE_BYTES}:]).hex())
`

export function parseAttestation(out: string, nonce: Buffer): AttestationRun {
  const run: AttestationRun = {errors: [], notes: [], nonce}
  for (const line of out.split('\n')) {
    const m = /^(method|provider|report|error|note): ?(.*)$/.exec(line.trim())
    if (!m) continue
    const [, key, value] = m
    if (key === 'method') run.method = value
    else if (key === 'provider') run.provider = value.trim()
    else if (key === 'report' && /^([0-9a-f]{2})+$/.test(value)) run.report = Buffer.from(value, 'hex')
    else if (key === 'report') run.errors.push(`the report is empty or not hex (${value.length} characters)`)
    else if (key === 'error') run.errors.push(value)
    else run.notes.push(value)
  }
  return run
}

/** The report's verdict: taken by the mode's provider, bound to the nonce (SNP: REPORT_DATA at 0x50; TDX: anywhere in the quote or TDREPORT). */
export function attestationOutcome(mode: 'snp' | 'tdx', run: AttestationRun): Outcome {
  const how = `${run.method ?? 'no method'}; provider ${run.provider ?? 'none'}`
  if (!run.report) return fail(`no attestation report (${how}): ${[...run.errors, ...run.notes].join('; ') || 'the guest printed nothing'}`)
  if (!run.provider?.startsWith(PROVIDER[mode])) return fail(`the report came from ${run.provider ?? 'no provider'}, not ${PROVIDER[mode]} (${how})`)
  if (mode === 'tdx') {
    return run.report.includes(run.nonce)
      ? pass(`${run.report.length}-byte report with the run's ${NONCE_BYTES}-byte nonce in its REPORTDATA (${how})`)
      : fail(`the ${run.report.length}-byte report does not carry the run's nonce (${how})`)
  }
  const r = run.report
  if (r.length < SNP_REPORT.bytes) return fail(`an SNP report is 0x${SNP_REPORT.bytes.toString(16)} bytes; got ${r.length} (${how})`)
  if (!r.subarray(SNP_REPORT.reportData, SNP_REPORT.reportData + NONCE_BYTES).equals(run.nonce)) return fail(`the report's REPORT_DATA (0x50) is not the run's nonce: a stale or foreign report (${how})`)
  return pass(
    `ATTESTATION_REPORT version ${r.readUInt32LE(0)}, policy 0x${r.readBigUInt64LE(SNP_REPORT.policy).toString(16)}, VMPL ${r.readUInt32LE(SNP_REPORT.vmpl)}, REPORT_DATA = the run's nonce, MEASUREMENT ${snpMeasurement(r)} (${how})`,
  )
}

/** the report's MEASUREMENT, lower-case hex */
export function snpMeasurement(report: Buffer): string {
  return report.subarray(SNP_REPORT.measurement, SNP_REPORT.measurement + SNP_REPORT.measurementBytes).toString('hex')
}

/** attestation-report: takes the report in the guest (kept for launch-measurement) and judges it. */
export async function checkAttestationReport(ctx: CheckContext): Promise<Outcome> {
  if (ctx.mode !== 'snp' && ctx.mode !== 'tdx') return skip(`mode ${ctx.mode} has no attestation report`)
  const nonce = randomBytes(NONCE_BYTES)
  const r = await ctx.guest.exec(['sh', '-c', attestationScript()], {timeoutMs: ctx.timeoutMs, stdin: nonce})
  const run = parseAttestation(`${r.stdout}\n${r.stderr}`, nonce)
  const outcome = attestationOutcome(ctx.mode, run)
  if (outcome.verdict === 'pass') ctx.shared.attestation = run
  return outcome
}

/** launch-measurement (snp): the report's MEASUREMENT is a launch digest predicted for this boot. */
export async function checkLaunchMeasurement(ctx: CheckContext): Promise<Outcome> {
  const report = ctx.shared.attestation?.report
  if (!report) return skip('not run: no attestation report was taken (attestation-report)')
  const measured = snpMeasurement(report)
  const expected = ctx.snpLaunch
  if (!expected || 'notGiven' in expected) return skip(`not compared: ${expected?.notGiven ?? 'no predicted SEV-SNP launch digest'} (measured ${measured})`)
  const hit = expected.digests.find((d) => d.value === measured)
  if (hit) return pass(`MEASUREMENT ${measured} is the digest ${expected.source} predicts for ${hit.label}`)
  const shown = expected.digests.slice(0, 4).map((d) => `${d.value} (${d.label})`)
  return fail(`MEASUREMENT ${measured} is none of the ${expected.digests.length} digest(s) ${expected.source} predicts: ${shown.join('; ')}${expected.digests.length > 4 ? '; ...' : ''}`)
}

/**
 * The SNP digests a release predicts for a boot of `cpus` vCPUs under QEMU (measure's snp-launch
 * entries: the manifest's or `measure --mode snp --json`'s), or why there are none to compare.
 */
export function snpLaunchExpectation(given: {entries: MeasurementEntry[]; source: string} | undefined, cpus: number): SnpLaunchExpectation {
  const hint = 'give --measurements with the release manifest or `cvm-image measure --mode snp --json` output'
  if (!given) return {notGiven: `no predicted SEV-SNP launch digest: ${hint}`}
  const snp = given.entries.filter((e) => e.kind === 'snp-launch')
  if (snp.length === 0) return {notGiven: `${given.source} has no SEV-SNP launch digest (snp-launch): ${hint}`}
  const digests = snp
    .filter((e) => Number(e.params.vcpus) === cpus && (e.params.vmm ?? 'qemu') === 'qemu')
    .map((e) => ({value: e.value.toLowerCase(), label: ['firmware', 'firmwareSha256', 'vcpus', 'cpuType', 'guestFeatures', 'vmm'].filter((k) => e.params[k] !== undefined).map((k) => `${k} ${e.params[k]}`).join(', ')}))
  if (digests.length === 0) return {notGiven: `${given.source} predicts SEV-SNP digests only for ${[...new Set(snp.map((e) => `${e.params.vcpus} vCPUs under ${e.params.vmm}`))].join(', ')}, not for this boot's ${cpus} under QEMU`}
  return {digests, source: given.source}
}
