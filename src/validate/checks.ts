import {withTimeout} from '../util/timeout.js'
import {checkAttestationReport, checkLaunchMeasurement} from './attestation.js'
import type {BootKind, Check, CheckContext, CheckRun, DirectIoRun, Outcome} from './check-types.js'
import {kexecRoundTrip, powerOff} from './lifecycle.js'
import {checkTpmPcrs} from './vtpm.js'
import {parseProbeOutput, probeArgv, probeOutcome, PROBE_REMOTE_PATH, PROBE_TIMEOUT_MS, SCRATCH_SERIAL} from './nvme-probe.js'

const pass = (evidence: string): Outcome => ({verdict: 'pass', evidence})
const fail = (evidence: string): Outcome => ({verdict: 'fail', evidence})
const skip = (evidence: string): Outcome => ({verdict: 'skip', evidence})

const everyBoot = () => true
const fullBoot = (b: BootKind) => b.full
const diskAloneBoot = (b: BootKind) => !b.full
const secureBootBoot = (b: BootKind) => b.secureBoot === true
const attestedBoot = (b: BootKind) => b.full && (b.mode === 'snp' || b.mode === 'tdx')

/** Every check, in the order they run (and are reported) in a boot. */
export const CHECKS: readonly Check[] = [
  {name: 'kernel', appliesTo: everyBoot, run: checkRunningKernel},
  {name: 'cmdline', appliesTo: diskAloneBoot, run: checkCmdline},
  {name: 'secure-boot', appliesTo: secureBootBoot, run: checkSecureBoot},
  {name: 'tpm-pcrs', appliesTo: everyBoot, run: checkTpmPcrs},
  {name: 'marker', appliesTo: fullBoot, run: checkMarker},
  {name: 'memory-encryption', appliesTo: fullBoot, run: checkMemoryEncryption},
  {name: 'attestation-report', appliesTo: attestedBoot, run: checkAttestationReport},
  {name: 'launch-measurement', appliesTo: (b) => b.full && b.mode === 'snp', run: checkLaunchMeasurement},
  {name: 'swiotlb-active', appliesTo: fullBoot, run: checkSwiotlbActive},
  {name: 'network', appliesTo: fullBoot, run: checkNetwork},
  {name: 'nvme-integrity', appliesTo: fullBoot, run: checkNvmeIntegrity, timeoutMs: PROBE_TIMEOUT_MS + 600_000},
  {name: 'swiotlb-bounce', appliesTo: fullBoot, run: async (ctx) => (ctx.shared.directIo ? bounceOutcome(ctx.shared.directIo) : skip('the O_DIRECT run did not complete'))},
  // after the O_DIRECT run, which overlaps cloud-init's last stages instead of waiting for them
  {name: 'cloud-init', appliesTo: fullBoot, run: checkCloudInit},
  {name: 'kexec', appliesTo: fullBoot, run: kexecRoundTrip},
  {name: 'poweroff', appliesTo: everyBoot, run: powerOff},
]

export function checksFor(boot: BootKind, checks: readonly Check[] = CHECKS): Check[] {
  return checks.filter((c) => c.appliesTo(boot))
}

/**
 * Runs a boot's checks in table order, each within timeoutMs; a check that throws fails with its
 * message. Once the guest is gone (a kexec it did not come back from) the checks left are skipped;
 * so is a check the caller names in notRun, with the caller's reason.
 */
export async function runChecks(
  ctx: CheckContext,
  boot: BootKind,
  opts: {timeoutMs: number; onStart?: (name: string) => void; onDone: (run: CheckRun) => void; checks?: readonly Check[]; notRun?: Readonly<Record<string, string>>},
): Promise<void> {
  for (const check of checksFor(boot, opts.checks)) {
    if (ctx.machine.gone !== undefined) {
      opts.onDone({name: check.name, ...skip(`not run: ${ctx.machine.gone}`), durationMs: 0})
      continue
    }
    const unasked = opts.notRun && Object.hasOwn(opts.notRun, check.name) ? opts.notRun[check.name] : undefined
    if (unasked !== undefined) {
      opts.onDone({name: check.name, ...skip(`not run: ${unasked}`), durationMs: 0})
      continue
    }
    const s = Date.now()
    opts.onStart?.(check.name)
    let o: Outcome
    try {
      o = await withTimeout(check.run(ctx), Math.max(check.timeoutMs ?? opts.timeoutMs, 1000), check.name)
    } catch (e) {
      o = fail((e as Error).message)
    }
    opts.onDone({name: check.name, ...o, durationMs: Date.now() - s})
  }
}

async function sh(ctx: CheckContext, script: string, timeoutMs = ctx.timeoutMs) {
  return ctx.guest.exec(['sh', '-c', script], {timeoutMs})
}

const firstLine = (s: string, re: RegExp) => s.split('\n').find((l) => re.test(l))?.trim()

/** The booted kernel is the one compile built: uname -r, /proc/version, and the series' marker line. */
export async function checkRunningKernel(ctx: CheckContext): Promise<Outcome> {
  const r = await sh(ctx, 'uname -r; cat /proc/version')
  const [release, procVersion = ''] = r.stdout.trim().split('\n')
  const evidence = `uname -r: ${release}; /proc/version: ${procVersion}`
  if (!ctx.expected.release) return skip(`no compile metadata to compare with (${evidence})`)
  if (release !== ctx.expected.release) return fail(`booted ${release}, built ${ctx.expected.release} (${procVersion})`)
  if (!procVersion.includes(ctx.expected.release)) return fail(`/proc/version does not name ${ctx.expected.release}: ${procVersion}`)
  if (ctx.expected.version && !procVersion.includes(ctx.expected.version)) return fail(`/proc/version lacks the built version ${ctx.expected.version}: ${procVersion}`)
  return pass(evidence)
}

/** The disk booted by the firmware alone runs with the UKI's own command line. */
export async function checkCmdline(ctx: CheckContext): Promise<Outcome> {
  const r = await ctx.guest.exec(['cat', '/proc/cmdline'], {timeoutMs: ctx.timeoutMs})
  const got = r.stdout.trim()
  return got === ctx.uki.cmdline ? pass(`booted from the disk alone with the UKI's own command line: ${got}`) : fail(`/proc/cmdline "${got}" is not the UKI's "${ctx.uki.cmdline}"`)
}

/** EFI's global SecureBoot variable: 4 bytes of attributes, then the value (1: on). */
const SECURE_BOOT_VAR = '/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c'

/**
 * The firmware booted the UKI with Secure Boot on: the SecureBoot variable is 1 and the kernel
 * says so: "secureboot: Secure boot enabled" (drivers/firmware/efi/secureboot.c, 5.6 and later, and
 * RHEL 8's 4.18), or the same words with no prefix (arch/x86/kernel/setup.c, 4.14 to 5.5). The firmware refusing an
 * image it cannot verify shows as a failed boot instead (firmwareRefusal in boot.ts).
 */
export async function checkSecureBoot(ctx: CheckContext): Promise<Outcome> {
  const r = await sh(ctx, `od -An -tu1 ${SECURE_BOOT_VAR}; echo; dmesg`)
  const bytes = r.stdout.split('\n')[0].trim().split(/\s+/).map(Number)
  const value = bytes.length === 5 ? bytes[4] : undefined
  const line = firstLine(r.stdout, /\] (secureboot: )?Secure boot (enabled|disabled|could not be determined)/)
  const evidence = `SecureBoot variable: ${value ?? `unreadable (${r.stdout.split('\n')[0].trim() || r.stderr.trim()})`}; dmesg: ${line ?? 'no "Secure boot" line'}`
  return value === 1 && line?.includes('Secure boot enabled') ? pass(evidence) : fail(evidence)
}

/** The series' marker patch prints a line at boot. */
export async function checkMarker(ctx: CheckContext): Promise<Outcome> {
  if (!ctx.expected.marker) return skip('the patch series has no marker patch')
  const r = await sh(ctx, 'dmesg')
  const line = r.stdout.split('\n').find((l) => l.includes(ctx.expected.marker!))
  return line ? pass(line.trim()) : fail(`no dmesg line contains "${ctx.expected.marker}"`)
}

/**
 * The memory-encryption line for the mode (docs/design.md "What a guest prints"): up to 5.9 "AMD Secure
 * Encrypted Virtualization (SEV) active", which says nothing of SEV-ES; 5.10-5.18 "AMD Memory
 * Encryption Features active: SEV SEV-ES"; 5.19+ "Memory Encryption Features active: AMD SEV SEV-ES",
 * with " SEV-SNP" in an SNP guest; a TDX guest's is "Memory Encryption Features active: Intel TDX"
 * (arch/x86/mm/mem_encrypt.c print_mem_encrypt_feature_info, the same words in 6.1 and 6.12).
 */
export async function checkMemoryEncryption(ctx: CheckContext): Promise<Outcome> {
  const r = await sh(ctx, 'dmesg')
  const line = firstLine(r.stdout, /Memory Encryption Features active|Secure Encrypted Virtualization \(SEV\) active/)
  if (ctx.mode === 'emulated') {
    return skip(`emulated mode: TCG encrypts no memory, so no SEV line can appear (${line ? `unexpected: ${line}` : 'none printed, as expected'})`)
  }
  if (!line) return fail('no "Memory Encryption Features active" (or, before 5.10, "Secure Encrypted Virtualization (SEV) active") line in dmesg')
  const features = line.replace(/^.*active:?/, '')
  const want = {sev: /SEV/, 'sev-es': /SEV-ES/, snp: /SEV-SNP/, tdx: /Intel TDX/}[ctx.mode]
  return want.test(features) || (ctx.mode === 'sev' && /\(SEV\) active/.test(line)) ? pass(line) : fail(`${ctx.mode} not listed: ${line}`)
}

/**
 * SWIOTLB is set up, and (emulated) forced for every DMA. 6.1 prints "software IO TLB: mapped" only
 * when x86 itself wants bounce buffers (RAM above 4 GiB, memory encryption); with swiotlb=force on a
 * smaller guest the pool is kept silently, so its debugfs slab count is the evidence then.
 */
export async function checkSwiotlbActive(ctx: CheckContext): Promise<Outcome> {
  const r = await sh(
    ctx,
    '[ -d /sys/kernel/debug/swiotlb ] || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null; dmesg; echo "cmdline: $(cat /proc/cmdline)"; echo "nslabs: $(cat /sys/kernel/debug/swiotlb/io_tlb_nslabs 2>/dev/null)"',
  )
  const mapped = firstLine(r.stdout, /software IO TLB: mapped/)
  const cmdline = (firstLine(r.stdout, /^cmdline: /) ?? '').replace(/^cmdline: /, '')
  const nslabs = Number((firstLine(r.stdout, /^nslabs: /) ?? '').replace(/^nslabs: /, '') || 0)
  const pool = mapped ?? (nslabs > 0 ? `/sys/kernel/debug/swiotlb/io_tlb_nslabs: ${nslabs} (${(nslabs * 2048) >> 20} MiB pool; no "mapped" line: the kernel prints it only when x86 needs bounce buffers itself)` : undefined)
  if (!pool) return fail(`no "software IO TLB: mapped" line in dmesg and no SWIOTLB slabs in debugfs (cmdline: ${cmdline})`)
  if (ctx.forcedSwiotlb && !/(^|\s)swiotlb=force(\s|$)/.test(cmdline)) return fail(`${pool}; but swiotlb=force is not in /proc/cmdline: ${cmdline}`)
  const forced = ctx.forcedSwiotlb ? `/proc/cmdline: ${cmdline}` : firstLine(r.stdout, /Memory encryption is active and system is using DMA bounce buffers/) ?? 'bounce buffers forced by memory encryption'
  return pass(`${pool}; ${forced}`)
}

export async function checkNetwork(ctx: CheckContext): Promise<Outcome> {
  const r = await sh(ctx, 'ip -o -4 addr show scope global; ip route show default')
  const addr = firstLine(r.stdout, /inet /)
  const route = firstLine(r.stdout, /^default /)
  if (!addr) return fail(`no global IPv4 address: ${r.stdout.trim() || r.stderr.trim()}`)
  if (!route) return fail(`no default route (${addr})`)
  return pass(`${addr.replace(/\\.*$/, '').replace(/\s+/g, ' ').trim()}; ${route}`)
}

/**
 * cloud-init finished every stage without errors. The guest's files are read directly: under TCG
 * each `cloud-init status` run is seconds of Python start-up. The verdict follows the rules of
 * `cloud-init status` (docs/design.md "cloud-init's status"): status.json's v1 holds a dict per
 * stage ({start, finished, errors}) and `stage` (the stage running, or null); result.json is
 * written after status.json when the last stage (modules-final) ends, with every stage's errors.
 */
export async function checkCloudInit(ctx: CheckContext): Promise<Outcome> {
  const st = await sh(ctx, `while [ ! -e ${CLOUD_INIT_RESULT} ]; do sleep 0.2; done; cat ${CLOUD_INIT_STATUS}; echo; echo ${CLOUD_INIT_SEPARATOR}; cat ${CLOUD_INIT_RESULT}`)
  const [statusText = '', resultText = ''] = st.stdout.split(`\n${CLOUD_INIT_SEPARATOR}\n`)
  return cloudInitOutcome(statusText, resultText, st.stderr.trim())
}

const CLOUD_INIT_STATUS = '/run/cloud-init/status.json'
const CLOUD_INIT_RESULT = '/run/cloud-init/result.json'
const CLOUD_INIT_SEPARATOR = '--- cvm-image: result.json ---'

interface CloudInitStage {start?: number | null; finished?: number | null; errors?: unknown[]; recoverable_errors?: Record<string, unknown[]>}

/** The cloud-init check's verdict from the text of status.json and result.json. */
export function cloudInitOutcome(statusText: string, resultText: string, stderr = ''): Outcome {
  let v1: Record<string, unknown>
  let result: {datasource?: string; errors?: unknown[]}
  try {
    v1 = (JSON.parse(statusText) as {v1?: Record<string, unknown>}).v1 ?? {}
  } catch {
    return fail(`${CLOUD_INIT_STATUS} missing or unreadable${stderr ? `: ${stderr}` : ''}`)
  }
  try {
    result = (JSON.parse(resultText) as {v1?: typeof result}).v1 ?? {}
  } catch {
    return fail(`${CLOUD_INIT_RESULT} missing or unreadable${stderr ? `: ${stderr}` : ''}`)
  }
  const errors: unknown[] = [...(result.errors ?? [])]
  const finished: string[] = []
  const running: string[] = []
  let recoverable = 0
  for (const [name, value] of Object.entries(v1).sort(([a], [b]) => a.localeCompare(b))) {
    if (!value || typeof value !== 'object' || Array.isArray(value)) continue
    const stage = value as CloudInitStage
    for (const e of stage.errors ?? []) if (!errors.some((x) => JSON.stringify(x) === JSON.stringify(e))) errors.push(e)
    for (const list of Object.values(stage.recoverable_errors ?? {})) recoverable += Array.isArray(list) ? list.length : 0
    if (stage.start && !stage.finished) running.push(name)
    else if (stage.finished) finished.push(name)
  }
  if (typeof v1.stage === 'string' && v1.stage && !running.includes(v1.stage)) running.push(v1.stage)
  const datasource = result.datasource ?? (typeof v1.datasource === 'string' ? v1.datasource : '')
  const evidence = `stages finished: ${finished.join(', ') || 'none'}${running.length ? `; still running: ${running.join(', ')}` : ''}; datasource: ${datasource}${recoverable ? `; ${recoverable} recoverable error(s) logged` : ''}`
  if (errors.length) return fail(`${evidence}; errors: ${JSON.stringify(errors)}`)
  if (running.length || finished.length === 0) return fail(`not done: ${evidence}`)
  return pass(`done: ${evidence}`)
}

/** Byte size, offset (bytes) pairs for O_DIRECT writes: odd multiples of 512, offsets off page alignment. */
export const DIRECT_IO_CASES: {bs: number; count: number; offset: number}[] = [
  {bs: 512, count: 1, offset: 512 * 7},
  {bs: 512, count: 33, offset: 512 * 4099},
  {bs: 4608, count: 13, offset: 512 * 3},
  {bs: 65024, count: 7, offset: 4096 + 512},
  {bs: 131584, count: 5, offset: (1 << 20) - 512},
  {bs: 1048576, count: 8, offset: 512 * 9},
  {bs: 3584, count: 301, offset: 512 * 11},
  {bs: 4194304 - 512, count: 2, offset: 512 * 13},
]

export {SCRATCH_SERIAL}

/**
 * The guest script: O_DIRECT writes of random data at odd sizes and offsets to the scratch NVMe disk
 * and to a file on the NVMe root, O_DIRECT read-backs, sha256 compared; meanwhile a sampler reads
 * the SWIOTLB slot counters, so the same run shows the bounce buffers were used.
 */
export function directIoScript(cases = DIRECT_IO_CASES): string {
  const list = cases.map((c) => `${c.bs}:${c.count}:${c.offset}`).join(' ')
  return `set -u
S=/sys/kernel/debug/swiotlb
[ -d $S ] || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
dev=
for b in /sys/block/nvme*; do
  [ "$(tr -d ' ' < $b/device/serial 2>/dev/null)" = ${SCRATCH_SERIAL} ] && dev=/dev/\${b##*/}
done
[ -n "$dev" ] || { echo "error: no NVMe disk with serial ${SCRATCH_SERIAL}"; exit 2; }
nslabs=$(cat $S/io_tlb_nslabs 2>/dev/null || echo none)
idle=$(cat $S/io_tlb_used 2>/dev/null || echo none)
echo "swiotlb nslabs=$nslabs idle_used=$idle hiwater_before=$(cat $S/io_tlb_used_hiwater 2>/dev/null || echo none)"
rm -f /run/cvm-io.done /run/cvm-io.max
if [ -r $S/io_tlb_used ]; then
  ( max=0; n=0; while [ ! -e /run/cvm-io.done ]; do u=$(cat $S/io_tlb_used); n=$((n+1)); [ "$u" -gt "$max" ] && max=$u; done; echo "$max $n" > /run/cvm-io.max ) &
fi
src=/dev/shm/cvm-io.src
head -c 16777216 /dev/urandom > $src
rootfile=/var/tmp/cvm-direct-io.bin
dd if=/dev/zero of=$rootfile bs=1M count=24 status=none
srcoff=0
for c in ${list}; do
  bs=\${c%%:*}; rest=\${c#*:}; count=\${rest%%:*}; off=\${rest#*:}
  bytes=$((bs * count))
  for target in $dev $rootfile; do
    want=$(dd if=$src iflag=skip_bytes,count_bytes skip=$srcoff count=$bytes bs=65536 status=none | sha256sum | cut -c1-64)
    dd if=$src of=$target iflag=skip_bytes,fullblock skip=$srcoff bs=$bs count=$count oflag=direct,seek_bytes seek=$off conv=notrunc,fsync status=none || echo "error: write bs=$bs count=$count off=$off to $target failed"
    got=$(dd if=$target iflag=direct,skip_bytes skip=$off bs=$bs count=$count status=none | sha256sum | cut -c1-64)
    if [ "$want" = "$got" ]; then echo "ok $target bs=$bs count=$count off=$off sha256=$got"; else echo "MISMATCH $target bs=$bs count=$count off=$off want=$want got=$got"; fi
  done
  srcoff=$(( (srcoff + bytes + 512) % 8388608 ))
done
touch /run/cvm-io.done; wait
echo "sampled $(cat /run/cvm-io.max 2>/dev/null || echo 'none 0')"
echo "hiwater_after=$(cat $S/io_tlb_used_hiwater 2>/dev/null || echo none)"
rm -f $src $rootfile /run/cvm-io.done /run/cvm-io.max
`
}

const num = (s: string | undefined) => (s === undefined || s === 'none' || s === '' ? undefined : Number(s))

export function parseDirectIo(out: string): DirectIoRun {
  const lines = out.split('\n')
  const head = /swiotlb nslabs=(\S+) idle_used=(\S+) hiwater_before=(\S+)/.exec(out)
  const sampled = /^sampled (\S+) (\d+)/m.exec(out)
  return {
    ok: lines.filter((l) => l.startsWith('ok ')),
    mismatches: lines.filter((l) => l.startsWith('MISMATCH ')),
    errors: lines.filter((l) => l.startsWith('error:') || /dd: /.test(l)),
    nslabs: num(head?.[1]),
    idleUsed: num(head?.[2]),
    hiwaterBefore: num(head?.[3]),
    peakUsed: num(sampled?.[1]),
    samples: Number(sampled?.[2] ?? 0),
    hiwaterAfter: num(/hiwater_after=(\S+)/.exec(out)?.[1]),
  }
}

/**
 * NVMe integrity through the bounce buffers: the offset probe (O_DIRECT from buffers at in-page
 * offsets, the only I/O the 2021 SWIOTLB bug corrupts), then the dd script (page-aligned O_DIRECT at
 * odd sizes and disk offsets, on the scratch disk and a file on the root; its run also samples the
 * bounce counters for swiotlb-bounce). Fails if either finds a difference.
 */
export async function checkNvmeIntegrity(ctx: CheckContext): Promise<Outcome> {
  const probe = ctx.probe ? await runProbe(ctx, ctx.probe) : undefined
  ctx.shared.directIo = await runDirectIo(ctx)
  const dd = nvmeIntegrityOutcome(ctx.shared.directIo)
  if (!probe) return dd.verdict === 'pass' ? {verdict: 'fail', evidence: `the NVMe offset probe was not run (no probe binary); dd: ${dd.evidence}`} : dd
  if (probe.verdict !== 'pass') return fail(`${probe.evidence}; dd (page-aligned buffers): ${dd.verdict === 'pass' ? 'all cases match' : dd.evidence}`)
  if (dd.verdict !== 'pass') return fail(`dd: ${dd.evidence}; probe: ${probe.evidence}`)
  return pass(`${probe.evidence}; dd: ${dd.evidence}`)
}

/** Hands the probe to the guest (tmpfs, removed afterwards: the image stays as it was), runs it on the scratch disk. */
async function runProbe(ctx: CheckContext, binary: Buffer): Promise<Outcome> {
  const t = PROBE_TIMEOUT_MS
  const put = await ctx.guest.exec(['sh', '-c', `cat > ${PROBE_REMOTE_PATH} && chmod 0700 ${PROBE_REMOTE_PATH}`], {timeoutMs: t, stdin: binary})
  if (put.exitCode !== 0) return fail(`could not copy the NVMe offset probe to ${PROBE_REMOTE_PATH}: ${(put.stderr || put.stdout).trim()}`)
  try {
    const r = await ctx.guest.exec(probeArgv(), {timeoutMs: t})
    return probeOutcome(parseProbeOutput(r.stdout, r.exitCode))
  } finally {
    await ctx.guest.exec(['rm', '-f', PROBE_REMOTE_PATH], {timeoutMs: t}).catch(() => undefined)
  }
}

/** Runs the O_DIRECT script once; two checks read its result. */
export async function runDirectIo(ctx: CheckContext): Promise<DirectIoRun> {
  const r = await sh(ctx, directIoScript(), Math.max(ctx.timeoutMs, 600_000))
  return parseDirectIo(`${r.stdout}\n${r.stderr}`)
}

export function nvmeIntegrityOutcome(io: DirectIoRun): Outcome {
  const total = DIRECT_IO_CASES.length * 2
  if (io.mismatches.length > 0) return fail(`${io.mismatches.length} of ${total} O_DIRECT read-backs differ: ${io.mismatches[0]}`)
  if (io.errors.length > 0) return fail(io.errors.slice(0, 3).join('; '))
  if (io.ok.length !== total) return fail(`only ${io.ok.length} of ${total} O_DIRECT cases ran`)
  const sizes = DIRECT_IO_CASES.map((c) => c.bs).join(',')
  return pass(`${io.ok.length}/${total} O_DIRECT write+read-back cases match by sha256 (scratch NVMe disk and a file on the NVMe root; bs ${sizes}; offsets 512-aligned, not page-aligned)`)
}

/**
 * The bounce buffers were used by the O_DIRECT run: the sampled io_tlb_used rose above its idle
 * count, or io_tlb_used_hiwater (6.6 and later) rose above its value read before the run.
 */
export function bounceOutcome(io: DirectIoRun): Outcome {
  if (io.nslabs === undefined) return fail('no /sys/kernel/debug/swiotlb/io_tlb_nslabs (CONFIG_DEBUG_FS, or SWIOTLB not initialised?)')
  // the boot's own I/O already raised the high-water mark above the idle count: only a rise during the run shows bouncing
  const hiwaterMoved = io.hiwaterAfter !== undefined && io.hiwaterBefore !== undefined && io.hiwaterAfter > io.hiwaterBefore
  const sampledMoved = io.peakUsed !== undefined && io.peakUsed > (io.idleUsed ?? 0)
  const evidence = `io_tlb_used idle ${io.idleUsed}, peak ${io.peakUsed ?? 'n/a'} over ${io.samples} samples during O_DIRECT I/O${io.hiwaterAfter !== undefined ? `, io_tlb_used_hiwater ${io.hiwaterBefore} -> ${io.hiwaterAfter}` : ''} (io_tlb_nslabs ${io.nslabs})`
  return sampledMoved || hiwaterMoved ? pass(evidence) : fail(`bounce counters did not move: ${evidence}`)
}
