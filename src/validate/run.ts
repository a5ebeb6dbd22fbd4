import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {basename, join} from 'node:path'

import {HostError, StageError} from '../errors.js'
import type {ValidationMode} from '../recipe/schema.js'
import {atomicWriteFile, sha256File} from '../util/fsx.js'
import {
  bounceOutcome,
  checkCloudInit,
  checkKernel,
  checkMarker,
  checkMemoryEncryption,
  checkNetwork,
  checkSwiotlbActive,
  nvmeIntegrityOutcome,
  runDirectIo,
  SCRATCH_SERIAL,
  type CheckContext,
  type CheckResult,
  type ExpectedKernel,
  type Outcome,
} from './checks.js'
import {GuestSession} from './guest.js'
import {LocalHost, type HostProcess, type ValidationHost} from './host.js'
import {OVMF_CODE, OVMF_VARS, probeHost, QEMU_BINARY, requireMode, type HostReport} from './host-probe.js'
import {buildQemuArgs, type QemuSpec} from './qemu-args.js'
import {junitXml, overallVerdict, type ModeReport, type ValidationReport} from './report.js'
import {generateRunKeys, renderSeed, serveSeed, writeSeedDisk, type RunKeys} from './seed.js'
import {extractUki, ukiParts} from './uki.js'

export type SeedMethod = 'disk' | 'http'

export interface ValidateRequest {
  /** the disk image (local path); it is never modified */
  disk: string
  modes: ValidationMode[]
  /** where QEMU runs; default this machine */
  host?: ValidationHost
  templatesDir: string
  /** gets report.json, junit.xml, serial.log (+ serial-<boot>.log) */
  outDir: string
  expected?: ExpectedKernel & {diskSha256?: string; ukiSha256?: string}
  memoryMiB?: number
  cpus?: number
  bootTimeoutS?: number
  /** also boot the disk alone (firmware finds \EFI\BOOT\BOOTX64.EFI) in emulated mode */
  diskBoot?: boolean
  /** NoCloud seed: a FAT CIDATA disk on NVMe (default), or HTTP via the SMBIOS serial (local host only) */
  seed?: SeedMethod
  hostname?: string
  signal?: AbortSignal
  log?: (line: string) => void
  progress?: (line: string) => void
  /** a probed host report, to skip probing again */
  hostReport?: HostReport
}

const SCRATCH_SIZE = '64M'
/** how long one check may take (the O_DIRECT run allows itself more) */
const CHECK_TIMEOUT_MS = 300_000

/**
 * Boots the unchanged disk image under QEMU + OVMF for each mode, reaches the guest over SSH with a
 * per-run key from a NoCloud seed, runs the checks, powers off, and writes report.json, junit.xml and
 * the serial logs. The service behind `cvm-image validate` and the validate stage.
 */
export async function validateImage(req: ValidateRequest): Promise<ValidationReport> {
  const host = req.host ?? new LocalHost()
  // this machine's temp files (seed, UKI) when QEMU runs elsewhere
  const local = host.remote ? new LocalHost() : host
  try {
    return await validateOn(req, host, local)
  } finally {
    await host.cleanup()
    if (local !== host) await local.cleanup()
  }
}

async function validateOn(req: ValidateRequest, host: ValidationHost, local: ValidationHost): Promise<ValidationReport> {
  const started = Date.now()
  const log = req.log ?? (() => {})
  const progress = req.progress ?? log
  const seedMethod: SeedMethod = req.seed ?? 'disk'
  if (seedMethod === 'http' && host.remote) throw new HostError('the HTTP seed works only when QEMU runs on this machine', {hint: 'use --seed disk with --host'})
  await mkdir(req.outDir, {recursive: true})

  progress(`probing ${host.label} for ${req.modes.join(', ')}`)
  const hostReport = req.hostReport ?? (await probeHost(host, {signal: req.signal}))
  for (const mode of req.modes) requireMode(hostReport, mode)

  // hashed while the first guest boots: QEMU opens it with snapshot=on, so it cannot change meanwhile
  const sha256BeforeP = req.expected?.diskSha256 ? Promise.resolve(req.expected.diskSha256) : sha256File(req.disk)
  sha256BeforeP.catch(() => {})
  const work = await host.tempDir()
  const localWork = host.remote ? await local.tempDir() : work
  const uki = await extractUki(req.disk, localWork, req.signal)
  if (req.expected?.ukiSha256 && req.expected.ukiSha256 !== uki.sha256) {
    throw new StageError(`the UKI on the ESP of ${req.disk} (sha256 ${uki.sha256}) is not the one assemble built (${req.expected.ukiSha256})`, {
      hint: 'the disk was changed after assemble; rebuild it',
    })
  }
  const ukiImage = await readFile(uki.path)
  const parts = ukiParts(ukiImage)
  log(`UKI ${uki.sha256} from the ESP; its command line: ${parts.cmdline}`)

  const hostDisk = host.remote ? join(work, basename(req.disk)) : req.disk
  const hostUki = host.remote ? join(work, 'uki.efi') : uki.path
  if (host.remote) {
    // checked against the hash taken here before the upload: the remote copy is the validated bytes
    let shown = -1
    const onProgress = (done: number, total: number) => {
      const pct = Math.floor((100 * done) / total)
      if (pct !== shown) progress(`uploading the disk to ${host.label}: ${(shown = pct)}%`)
    }
    await host.putFile(req.disk, hostDisk, onProgress, await sha256BeforeP)
    await host.putFile(uki.path, hostUki)
  }

  const checks: CheckResult[] = []
  const modes: ModeReport[] = []
  let verdictError: unknown
  try {
    for (const mode of req.modes) {
      const accel = mode === 'emulated' && !hostReport.kvm.usable ? 'tcg' : 'kvm'
      const boots: BootPlan[] =
        mode === 'emulated'
          ? [
              {name: 'uki', kernel: {path: hostUki, append: `${parts.cmdline} swiotlb=force`}, forcedSwiotlb: true, full: true},
              ...(req.diskBoot ? [{name: 'disk', forcedSwiotlb: false, full: false} as BootPlan] : []),
            ]
          : // under SEV the firmware measures what it boots: boot the disk as published, SWIOTLB is forced by the kernel
            [{name: 'disk', forcedSwiotlb: false, full: true}]
      for (const boot of boots) {
        const r = await runBoot({req, host, local, mode, accel, boot, work, hostReport, seedMethod, parts, hostDisk, checks, log, progress})
        modes.push(r)
      }
    }
  } catch (e) {
    verdictError = e
  } finally {
    for (const [i, m] of modes.entries()) {
      // the first boot's console is the stage's serial.log; further boots keep their tag
      const keptLog = join(req.outDir, i === 0 ? 'serial.log' : `serial-${m.boot}.log`)
      await host.getFile(m.serialLog, keptLog).catch(() => {})
      m.serialLog = keptLog
    }
  }
  if (verdictError) throw verdictError

  progress('hashing the disk image after the boots')
  const sha256Before = await sha256BeforeP
  const sha256After = await sha256File(req.disk)
  // remotely the guest booted the uploaded copy: that copy must be unchanged too
  const remoteAfter = host.remote ? (await host.exec('sha256sum', ['-b', '--', hostDisk])).stdout.split(/\s/)[0] : undefined
  const unchanged = sha256After === sha256Before && (remoteAfter === undefined || remoteAfter === sha256Before)
  checks.push({
    mode: req.modes[0],
    name: 'image-unchanged',
    durationMs: 0,
    ...(unchanged
      ? {verdict: 'pass', evidence: `sha256 ${sha256After} before and after${remoteAfter ? ` (and of the copy on ${host.label} after the boots)` : ''}`}
      : {verdict: 'fail', evidence: `sha256 changed: ${sha256Before} -> ${sha256After}${remoteAfter ? `, copy on ${host.label}: ${remoteAfter}` : ''}`}),
  })
  const bootToSshMs = modes.find((m) => m.bootToSshMs !== undefined)?.bootToSshMs
  const report: ValidationReport = {
    verdict: overallVerdict(checks),
    image: {path: req.disk, sha256Before, sha256After, ukiSha256: uki.sha256, ukiCmdline: parts.cmdline},
    host: host.label,
    modes,
    checks,
    timings: {totalMs: Date.now() - started, bootToSshMs},
    startedAt: new Date(started).toISOString(),
  }
  await atomicWriteFile(join(req.outDir, 'report.json'), JSON.stringify(report, null, 2) + '\n')
  await atomicWriteFile(join(req.outDir, 'junit.xml'), junitXml(report))
  return report
}

const FULL_CHECKS = ['kernel', 'marker', 'memory-encryption', 'swiotlb-active', 'network', 'cloud-init', 'nvme-integrity', 'swiotlb-bounce', 'kexec', 'poweroff']
const DISK_BOOT_CHECKS = ['kernel', 'cmdline', 'poweroff']

interface BootPlan {
  /** uki: -kernel with extra arguments; disk: firmware boots \EFI\BOOT\BOOTX64.EFI */
  name: 'uki' | 'disk'
  kernel?: {path: string; append: string}
  forcedSwiotlb: boolean
  /** every check; otherwise only what proves the boot (kernel, command line, power-off) */
  full: boolean
}

interface BootArgs {
  req: ValidateRequest
  host: ValidationHost
  local: ValidationHost
  mode: ValidationMode
  accel: 'tcg' | 'kvm'
  boot: BootPlan
  work: string
  hostReport: HostReport
  seedMethod: SeedMethod
  parts: ReturnType<typeof ukiParts>
  hostDisk: string
  checks: CheckResult[]
  log: (line: string) => void
  progress: (line: string) => void
}

/** One QEMU boot: seed, start, SSH, checks, power-off. QEMU is killed whatever happens. */
async function runBoot(a: BootArgs): Promise<ModeReport> {
  const {req, host, mode, boot, work} = a
  const tag = `${mode}${boot.name === 'uki' ? '' : `-${boot.name}-boot`}`
  const check = (name: string) => (boot.name === 'uki' || mode !== 'emulated' ? name : `disk-boot:${name}`)
  const bootTimeoutMs = (req.bootTimeoutS ?? 600) * 1000
  const checkTimeoutMs = CHECK_TIMEOUT_MS
  const keys = generateRunKeys()
  const seed = await renderSeed(req.templatesDir, keys, {hostname: req.hostname ?? 'cvm'})

  const localSeedDir = host.remote ? await a.local.tempDir() : work
  const bootDir = join(work, tag)
  await host.exec('mkdir', ['-p', bootDir])
  const disks: QemuSpec['disks'] = [{path: a.hostDisk, format: 'raw', serial: 'cvmroot', snapshot: true}]
  const scratch = join(bootDir, 'scratch.qcow2')
  await mustExec(host, 'qemu-img', ['create', '-q', '-f', 'qcow2', scratch, SCRATCH_SIZE], 'make the scratch disk')
  disks.push({path: scratch, format: 'qcow2', serial: SCRATCH_SERIAL})
  let seedServer: Awaited<ReturnType<typeof serveSeed>> | undefined
  let smbiosSerial: string | undefined
  if (a.seedMethod === 'disk') {
    await mkdir(join(localSeedDir, tag), {recursive: true})
    const img = await writeSeedDisk(join(localSeedDir, tag), seed, req.signal)
    const hostImg = join(bootDir, 'seed.img')
    await host.putFile(img, hostImg)
    disks.push({path: hostImg, format: 'raw', serial: 'cvmseed', readOnly: true})
  } else {
    seedServer = await serveSeed(seed)
    smbiosSerial = `ds=nocloud-net;s=http://10.0.2.2:${seedServer.port}/`
  }
  const vars = join(bootDir, 'OVMF_VARS.fd')
  await mustExec(host, 'cp', [OVMF_VARS, vars], 'copy the OVMF variable store')
  const serialLog = join(bootDir, 'serial.log')
  const sshPort = await host.freePort()
  const spec: QemuSpec = {
    mode,
    accel: a.accel,
    memoryMiB: req.memoryMiB ?? 2048,
    cpus: req.cpus ?? 2,
    firmware: {code: OVMF_CODE, vars},
    disks,
    kernel: boot.kernel,
    sshPort,
    serialLog,
    smbiosSerial,
    cbitpos: a.hostReport.sev.cbitpos,
  }
  const argv = buildQemuArgs(spec)
  const report: ModeReport = {mode, boot: tag, accel: a.accel, seed: a.seedMethod === 'disk' ? 'NoCloud FAT disk (label CIDATA) on NVMe' : `NoCloudNet over HTTP (SMBIOS serial ${smbiosSerial})`, serialLog, qemuArgs: argv}
  a.log(`${QEMU_BINARY} ${argv.join(' ')}`)

  const t0 = Date.now()
  const qemu = host.spawn(QEMU_BINARY, argv)
  const onAbort = () => void qemu.kill()
  req.signal?.addEventListener('abort', onAbort, {once: true})
  let guest: GuestSession | undefined
  let guestAlive = true
  const connect = async () => {
    a.progress(`${tag}: waiting for the guest's SSH (${a.accel})`)
    return GuestSession.waitFor(host, sshPort, keys, {timeoutMs: bootTimeoutMs, signal: req.signal, qemuExited: qemu.exited, onAttempt: (e) => a.log(`${tag}: ssh: ${e}`)})
  }
  const record = async (name: string, fn: () => Promise<Outcome>) => {
    const s = Date.now()
    a.progress(`${tag}: ${name}`)
    let o: Outcome
    try {
      o = await withTimeout(fn(), Math.max(checkTimeoutMs, 1000), name)
    } catch (e) {
      o = {verdict: 'fail', evidence: (e as Error).message}
    }
    a.log(`${tag}: ${name}: ${o.verdict}: ${o.evidence}`)
    a.checks.push({mode, name: check(name), ...o, durationMs: Date.now() - s})
  }
  try {
    try {
      guest = await connect()
    } catch (e) {
      if (req.signal?.aborted) throw e
      // a guest that never answers is a failed boot, reported like any check; the rest did not run
      const tail = tailLines(await serialText(host, serialLog), 5).join(' | ')
      a.checks.push({mode, name: check('boot'), verdict: 'fail', evidence: `${(e as Error).message}; serial log ends: ${tail}`, durationMs: Date.now() - t0})
      for (const name of boot.full ? FULL_CHECKS : DISK_BOOT_CHECKS) a.checks.push({mode, name: check(name), verdict: 'skip', evidence: 'not run: the guest did not boot to SSH', durationMs: 0})
      return report
    }
    report.bootToSshMs = Date.now() - t0
    a.checks.push({mode, name: check('boot'), verdict: 'pass', evidence: `SSH (run key, pinned run host key) answered ${(report.bootToSshMs / 1000).toFixed(1)} s after QEMU started (${a.accel}; seed: ${report.seed})`, durationMs: report.bootToSshMs})
    a.log(`${tag}: SSH answered ${report.bootToSshMs} ms after QEMU started`)
    const ctx: CheckContext = {mode, guest, expected: req.expected ?? {}, forcedSwiotlb: boot.forcedSwiotlb, timeoutMs: checkTimeoutMs, ukiKernel: a.parts}
    await record('kernel', () => checkKernel(ctx))
    if (!boot.full) {
      await record('cmdline', async () => {
        const r = await guest!.exec(['cat', '/proc/cmdline'], {timeoutMs: checkTimeoutMs})
        const got = r.stdout.trim()
        return got === a.parts.cmdline ? {verdict: 'pass', evidence: `booted from the disk alone with the UKI's own command line: ${got}`} : {verdict: 'fail', evidence: `/proc/cmdline "${got}" is not the UKI's "${a.parts.cmdline}"`}
      })
    } else {
      await record('marker', () => checkMarker(ctx))
      await record('memory-encryption', () => checkMemoryEncryption(ctx))
      await record('swiotlb-active', () => checkSwiotlbActive(ctx))
      await record('network', () => checkNetwork(ctx))
      await record('cloud-init', () => checkCloudInit(ctx))
      let io: Awaited<ReturnType<typeof runDirectIo>> | undefined
      await record('nvme-integrity', async () => nvmeIntegrityOutcome((io = await runDirectIo(ctx))))
      await record('swiotlb-bounce', async () => (io ? bounceOutcome(io) : {verdict: 'skip', evidence: 'the O_DIRECT run did not complete'}))
      await record('kexec', async () => {
        // from kexec -e until SSH answers again the old session is dead
        const o = await kexecRoundTrip(ctx, connect, () => (guestAlive = false), a.accel === 'tcg')
        if (o.guest) [guest, guestAlive] = [o.guest, true]
        ctx.guest = guest!
        return o.outcome
      })
    }
    if (guestAlive) await record('poweroff', () => powerOff(guest!, qemu, host, serialLog, checkTimeoutMs))
    else a.checks.push({mode, name: check('poweroff'), verdict: 'skip', evidence: 'not run: the guest did not come back from kexec', durationMs: 0})
  } finally {
    guest?.close()
    req.signal?.removeEventListener('abort', onAbort)
    await qemu.kill()
    await seedServer?.close()
    if (seedServer) a.log(`${tag}: HTTP seed requests: ${seedServer.requests.join(', ') || 'none'}`)
  }
  return report
}

/** kexec into the same kernel and back: a new boot id, the same release, SSH again. */
async function kexecRoundTrip(ctx: CheckContext, connect: () => Promise<GuestSession>, onGone: () => void, uniprocessor: boolean): Promise<{outcome: Outcome; guest?: GuestSession}> {
  const g = ctx.guest
  const t = ctx.timeoutMs
  const before = await g.exec(['sh', '-c', 'cat /proc/sys/kernel/random/boot_id; uname -r; command -v kexec || echo no-kexec; ls /boot/vmlinuz-$(uname -r) 2>/dev/null || echo no-vmlinuz'], {timeoutMs: t})
  const [bootId, release, kexecBin, vmlinuz] = before.stdout.trim().split('\n')
  if (kexecBin === 'no-kexec') return {outcome: {verdict: 'skip', evidence: 'kexec is not installed in the image (package kexec-tools)'}}
  let kernel = vmlinuz
  let initrdArg: string[] = []
  if (vmlinuz === 'no-vmlinuz') {
    // the image boots a UKI: kexec its .linux (and .initrd) sections, the very kernel that is running
    if (!ctx.ukiKernel?.linux) return {outcome: {verdict: 'fail', evidence: `no /boot/vmlinuz-${release} and the UKI has no .linux section`}}
    await g.exec(['mkdir', '-p', '/run/cvm-kexec'], {timeoutMs: t})
    await g.exec(['sh', '-c', 'cat > /run/cvm-kexec/vmlinuz'], {timeoutMs: t, stdin: ctx.ukiKernel.linux})
    kernel = '/run/cvm-kexec/vmlinuz'
    if (ctx.ukiKernel.initrd?.length) {
      await g.exec(['sh', '-c', 'cat > /run/cvm-kexec/initrd'], {timeoutMs: t, stdin: ctx.ukiKernel.initrd})
      initrdArg = ['--initrd=/run/cvm-kexec/initrd']
    }
  }
  let load = await g.exec(['kexec', '-s', '-l', kernel, ...initrdArg, '--reuse-cmdline'], {timeoutMs: t})
  if (load.exitCode !== 0) load = await g.exec(['kexec', '-l', kernel, ...initrdArg, '--reuse-cmdline'], {timeoutMs: t})
  if (load.exitCode !== 0) return {outcome: {verdict: 'fail', evidence: `kexec -l ${kernel} failed: ${(load.stderr || load.stdout).trim()}`}}
  // sync first: kexec -e does not unmount; the root is a throw-away overlay, but the logs should land
  await g.exec(['sync'], {timeoutMs: t})
  let cpusNote = ''
  if (uniprocessor) {
    // under TCG, kexec -e from an SMP guest hung once in two tries at "kexec_core: Starting new kernel"
    // (never with one vCPU): take the secondary CPUs offline first, so the jump starts from one CPU
    const off = await g.exec(['sh', '-c', 'n=0; for c in /sys/devices/system/cpu/cpu[1-9]*/online; do [ -e "$c" ] && echo 0 > "$c" && n=$((n+1)); done; echo $n'], {timeoutMs: t})
    cpusNote = ` (${off.stdout.trim()} secondary CPU(s) taken offline first: TCG)`
  }
  const t0 = Date.now()
  onGone()
  g.fire(['kexec', '-e'])
  await new Promise((r) => setTimeout(r, 3000))
  g.close()
  const again = await connect()
  const after = await again.exec(['sh', '-c', 'cat /proc/sys/kernel/random/boot_id; uname -r; cat /proc/cmdline'], {timeoutMs: t})
  const [bootId2, release2, cmdline2] = after.stdout.trim().split('\n')
  const secs = ((Date.now() - t0) / 1000).toFixed(1)
  if (bootId2 === bootId) return {guest: again, outcome: {verdict: 'fail', evidence: `boot id unchanged (${bootId}): kexec -e did not restart the kernel`}}
  if (release2 !== release) return {guest: again, outcome: {verdict: 'fail', evidence: `kexec came back with ${release2}, not ${release}`}}
  if (ctx.forcedSwiotlb && !/swiotlb=force/.test(cmdline2 ?? '')) return {guest: again, outcome: {verdict: 'fail', evidence: `after kexec swiotlb=force is gone: ${cmdline2}`}}
  return {guest: again, outcome: {verdict: 'pass', evidence: `kexec ${kernel}${cpusNote} -> SSH again after ${secs} s; boot_id ${bootId} -> ${bootId2}; uname -r ${release2} both times`}}
}

/** poweroff in the guest; QEMU must exit 0 and the serial log end with the kernel's "reboot: Power down". */
async function powerOff(guest: GuestSession, qemu: HostProcess, host: ValidationHost, serialLog: string, timeoutMs: number): Promise<Outcome> {
  guest.fire(['systemctl', 'poweroff'])
  const code = await withTimeout(qemu.exited, timeoutMs, 'QEMU to exit after poweroff').catch(() => 'timeout' as const)
  const line = (await serialText(host, serialLog)).split('\n').find((l) => /reboot: Power down/.test(l))?.trim()
  if (code === 'timeout') return {verdict: 'fail', evidence: `QEMU still running ${timeoutMs / 1000} s after poweroff`}
  if (code !== 0) return {verdict: 'fail', evidence: `QEMU exited with ${code} after poweroff: ${qemu.output().trim().split('\n').pop() ?? ''}`}
  if (!line) return {verdict: 'fail', evidence: 'QEMU exited 0 but the serial log has no "reboot: Power down"'}
  return {verdict: 'pass', evidence: `QEMU exited 0; serial: ${line}`}
}

async function serialText(host: ValidationHost, path: string): Promise<string> {
  return ((await host.readFile(path)) ?? Buffer.alloc(0)).toString('utf8').replace(/\r/g, '')
}

function tailLines(s: string, n: number): string[] {
  return s.trimEnd().split('\n').slice(-n)
}

async function mustExec(host: ValidationHost, cmd: string, args: string[], what: string): Promise<void> {
  const r = await host.exec(cmd, args)
  if (r.exitCode !== 0) throw new StageError(`${what} on ${host.label}: ${cmd} ${args.join(' ')} exited with ${r.exitCode}: ${(r.stderr || r.stdout).trim()}`)
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${Math.round(ms / 1000)} s`)), ms)
    }),
  ])
}

/** Writes a report for a validation that was not run (--no-validate): every mode skipped with the reason. */
export async function writeSkippedReport(outDir: string, modes: ValidationMode[], reason: string, disk: string): Promise<ValidationReport> {
  const report: ValidationReport = {
    verdict: 'skipped',
    image: {path: disk, sha256Before: '', ukiSha256: '', ukiCmdline: ''},
    host: 'none',
    modes: [],
    checks: modes.map((mode) => ({mode, name: 'all', verdict: 'skip', evidence: reason, durationMs: 0})),
    timings: {totalMs: 0},
    startedAt: new Date().toISOString(),
  }
  await mkdir(outDir, {recursive: true})
  await atomicWriteFile(join(outDir, 'report.json'), JSON.stringify(report, null, 2) + '\n')
  await atomicWriteFile(join(outDir, 'junit.xml'), junitXml(report))
  await writeFile(join(outDir, 'serial.log'), '')
  return report
}
