import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {basename, join} from 'node:path'


import {BugError, HostError, InputError, StageError} from '../errors.js'
import type {MeasurementEntry} from '../measure/entry.js'
import {DEFAULT_HOSTNAME, VALIDATE_DEFAULTS, type ValidationMode} from '../recipe/schema.js'
import {extentSha256, knownSha256, rememberSha256} from '../util/extent-hash.js'
import {atomicWriteFile, sha256File} from '../util/fsx.js'
import {snpLaunchExpectation} from './attestation.js'
import {GuestBoot, type SeedMethod} from './boot.js'
import type {BootKind, CheckContext, CheckResult, ExpectedKernel, PcrExpectation} from './check-types.js'
import {CHECKS, checksFor, runChecks} from './checks.js'
import {LocalHost, type ValidationHost} from './host.js'
import {OVMF_CODE_SECBOOT, OVMF_VARS, probeHost, requireMode, type HostReport} from './host-probe.js'
import {buildProbe} from './nvme-probe.js'
import type {HostPool} from './host-pool.js'
import {openHostPool, type HostTarget} from './open-host.js'
import {junitXml, overallVerdict, type ModeReport, type ValidationReport} from './report.js'
import {extractUki, ukiParts} from './uki.js'
import {expectedPcrs, expectedPcrsFrom, releaseDiskOutcome} from './vtpm.js'

export type {SeedMethod} from './boot.js'

export interface ValidateRequest {
  /** the disk image (local path); it is never modified */
  disk: string
  modes: ValidationMode[]
  /** where QEMU runs; default this machine. Every boot runs on it at once. */
  host?: ValidationHost
  /**
   * instead of host: a pool of remote hosts (docs/host-pool.md). Each boot takes a free host and
   * holds its lock for the boot; the disk is uploaded once to each host a boot lands on.
   */
  pool?: HostPool
  templatesDir: string
  /** gets report.json, junit.xml, serial.log (+ serial-<boot>.log) */
  outDir: string
  expected?: ExpectedKernel & {diskSha256?: string; ukiSha256?: string}
  /** the guest: each from the recipe (whose schema holds the defaults), or GUEST_DEFAULTS without one */
  memoryMiB: number
  cpus: number
  bootTimeoutS: number
  /** the full boot in emulated mode: the UKI with swiotlb=force, every check (default true) */
  ukiBoot?: boolean
  /** also boot the disk alone (firmware finds \EFI\BOOT\BOOTX64.EFI) in emulated mode */
  diskBoot?: boolean
  /** checks the caller does not need, by name, with why: each is reported as skipped with that reason, not run */
  notRun?: Readonly<Record<string, string>>
  /**
   * also boot the disk alone under Secure Boot in emulated mode: the SMM firmware with a copy of
   * this OVMF 4M variable store (a local file), which must have Secure Boot on and enroll the UKI's
   * signing certificate in db (Debian's OVMF_VARS_SNAKEOIL for its snakeoil key; docs/secure-boot.md)
   */
  secureBootVars?: string
  /**
   * the PCR values tpm-pcrs compares with, from a release (manifest.json's measurements, or
   * `cvm-image measure --json`) instead of the disk's own UKI: a disk changed since is caught
   */
  expectedMeasurements?: {entries: MeasurementEntry[]; source: string; diskSha256?: string}
  /** why the Secure Boot boot is not run though the UKI is signed: reported as the skipped secure-boot check */
  secureBootNotRun?: string
  /** NoCloud seed: a FAT CIDATA disk on NVMe (default), or HTTP via the SMBIOS serial (local host only) */
  seed?: SeedMethod
  hostname: string
  signal?: AbortSignal
  log?: (line: string) => void
  progress?: (line: string) => void
  /** a probed host report, to skip probing again (with a pool: every host's, the caller vouching that they are alike) */
  hostReport?: HostReport
  /** where the NVMe offset probe is built once per source digest (default: a folder under the system temp dir) */
  probeCacheDir?: string
  /** the build cache's sha256s by extent digest (src/util/extent-hash.ts): a disk assemble hashed is not read whole again */
  sha256MemoDir?: string
}

/** The guest of a recipe that says nothing of it (the schema's defaults), for callers without a recipe: `cvm-image validate`, tests. */
export const GUEST_DEFAULTS: Pick<ValidateRequest, 'memoryMiB' | 'cpus' | 'bootTimeoutS' | 'hostname'> = {
  memoryMiB: VALIDATE_DEFAULTS.memory_mib,
  cpus: VALIDATE_DEFAULTS.cpus,
  bootTimeoutS: VALIDATE_DEFAULTS.boot_timeout_s,
  hostname: DEFAULT_HOSTNAME,
}

/**
 * The one wiring of a validation, for `cvm-image validate` and the validate stage: this machine, or
 * the remote hosts the target names (one or a pool, each key pinned and refused before anything is
 * sent), over which the boots spread (docs/host-pool.md).
 */
export async function validateOnHost(target: HostTarget, req: Omit<ValidateRequest, 'host' | 'pool' | 'signal'>): Promise<ValidationReport> {
  const pool = openHostPool(target, req.progress ?? req.log)
  return validateImage({...req, ...(pool ? {pool} : {host: new LocalHost()}), signal: target.signal})
}

/** how long one check may take; it bounds the O_DIRECT run too, whose guest command asks for 600 s */
const CHECK_TIMEOUT_MS = 300_000

/**
 * Boots the unchanged disk image under QEMU + OVMF for each mode, reaches the guest over SSH with a
 * per-run key from a NoCloud seed, runs the checks, powers off, and writes report.json, junit.xml and
 * the serial logs. The service behind `cvm-image validate` and the validate stage.
 */
export async function validateImage(req: ValidateRequest): Promise<ValidationReport> {
  const local = new LocalHost()
  const host = req.pool ? undefined : (req.host ?? local)
  try {
    return await validateOn(req, host, local)
  } finally {
    if (req.pool) await req.pool.close()
    if (host && host !== local) await host.cleanup()
    await local.cleanup()
  }
}

/** A host prepared for boots: probed, the disk (and UKI, Secure Boot store) on it, its plain variable store read. */
interface Site {
  host: ValidationHost
  hostReport: HostReport
  work: string
  hostDisk: string
  hostUki: string
  hostSecureBootVars?: string
  /** the variable store its plain boots start with, for their PCR 7 */
  plainVars: {path: string; bytes?: Buffer}
}

async function validateOn(req: ValidateRequest, single: ValidationHost | undefined, local: ValidationHost): Promise<ValidationReport> {
  const started = Date.now()
  const log = req.log ?? (() => {})
  const progress = req.progress ?? log
  // a name that is no check would skip nothing and say nothing: the caller's mistake, not the user's
  const unknownNotRun = Object.keys(req.notRun ?? {}).filter((name) => !CHECKS.some((c) => c.name === name))
  if (unknownNotRun.length) throw new BugError(`notRun names no check: ${unknownNotRun.join(', ')}`)
  if (req.modes.includes('emulated') && req.ukiBoot === false && !req.diskBoot && !req.secureBootVars) {
    throw new InputError('emulated mode with no boot asked for: the UKI boot, the disk boot and the Secure Boot boot are all off', {hint: 'keep --uki-boot, or add --disk-boot or --secure-boot-vars'})
  }
  const seedMethod: SeedMethod = req.seed ?? 'disk'
  if (seedMethod === 'http' && (req.pool || single?.remote)) throw new HostError('the HTTP seed works only when QEMU runs on this machine', {hint: 'use --seed disk with --host'})
  await mkdir(req.outDir, {recursive: true})

  /** Probes a host (unless its report is known), and refuses one that lacks a mode asked for. */
  const probed = async (host: ValidationHost, known?: HostReport): Promise<HostReport> => {
    if (!known) progress(`probing ${host.label} for ${req.modes.join(', ')}`)
    const hostReport = known ?? (await probeHost(host, {signal: req.signal}))
    for (const mode of req.modes) requireMode(hostReport, mode)
    if (req.secureBootVars && req.modes.includes('emulated') && !hostReport.ovmf.secureBootCode) {
      throw new HostError(`${host.label} has no OVMF built with SMM (${OVMF_CODE_SECBOOT}), which a Secure Boot boot needs`, {hint: 'install the ovmf package (cvm-image doctor --install)'})
    }
    return hostReport
  }
  // a pool's host keys and logins are checked before any work (a down host is left for the boots to skip)
  await req.pool?.connectAll()
  // this machine or the one host: probed first, so a host that lacks a mode is refused before any work
  const singleReport = single ? await probed(single, req.hostReport) : undefined

  /** Probes a host and puts the disk there: once per host, when the first boot lands on it. */
  const prepare = async (host: ValidationHost): Promise<Site> => {
    const hostReport = host === single ? singleReport! : await probed(host, req.hostReport)
    const work = await host.tempDir()
    const ukiPath = uki.path
    const hostDisk = host.remote ? join(work, basename(req.disk)) : req.disk
    const hostUki = host.remote ? join(work, 'uki.efi') : ukiPath
    if (host.remote) {
      // checked against the hash taken here before the upload: the remote copy is the validated bytes
      let shown = -1
      const onProgress = (done: number, total: number) => {
        const pct = Math.floor((100 * done) / total)
        if (pct !== shown) progress(`uploading the disk to ${host.label}: ${(shown = pct)}%`)
      }
      await host.putFile(req.disk, hostDisk, onProgress, await sha256BeforeP)
      await host.putFile(ukiPath, hostUki)
    }
    const hostSecureBootVars = req.secureBootVars && host.remote ? join(work, 'OVMF_VARS.secure-boot.fd') : req.secureBootVars
    if (req.secureBootVars && host.remote) await host.putFile(req.secureBootVars, hostSecureBootVars!)
    return {host, hostReport, work, hostDisk, hostUki, hostSecureBootVars, plainVars: {path: `${OVMF_VARS} on ${host.label}`, bytes: await host.readFile(OVMF_VARS)}}
  }
  const sites = new Map<ValidationHost, Promise<Site>>()
  const siteOf = (host: ValidationHost) => {
    let p = sites.get(host)
    if (!p) sites.set(host, (p = prepare(host)))
    return p
  }

  // Every byte is hashed while the guests boot (QEMU opens the disk with snapshot=on, so they cannot
  // change it), unless the build cache already knows the sha256 of these very bytes by their extent
  // digest (src/util/extent-hash.ts: assemble kept it). The extent digest, taken now and after the
  // boots, shows in a fraction of a second that nothing changed; only where it cannot be taken or
  // differs is every byte read again after the boots.
  const extentBefore = await extentSha256(req.disk, req.signal)
  const known = extentBefore && req.sha256MemoDir ? await knownSha256(req.sha256MemoDir, extentBefore) : undefined
  const sha256NowP = known ? Promise.resolve(known) : sha256File(req.disk)
  sha256NowP.catch(() => {})
  const sha256BeforeP = req.expected?.diskSha256 ? Promise.resolve(req.expected.diskSha256) : sha256NowP
  const uki = await extractUki(req.disk, await local.tempDir(), req.signal)
  if (req.expected?.ukiSha256 && req.expected.ukiSha256 !== uki.sha256) {
    throw new StageError(`the UKI on the ESP of ${req.disk} (sha256 ${uki.sha256}) is not the one assemble built (${req.expected.ukiSha256})`, {
      hint: 'the disk was changed after assemble; rebuild it',
    })
  }
  const ukiImage = await readFile(uki.path)
  const parts = ukiParts(ukiImage)
  log(`UKI ${uki.sha256} from the ESP; its command line: ${parts.cmdline}`)
  if (single) await siteOf(single)

  // the Secure Boot boot's variable store (a local file), for its PCR 7
  const secureBootStore = req.secureBootVars ? {path: req.secureBootVars, bytes: await readFile(req.secureBootVars)} : undefined

  /** Runs fn on a site: the one host (every boot at once), or a pool host whose lock the boot holds meanwhile. */
  const onSite = async <T>(tag: string, fn: (site: Site) => Promise<T>): Promise<T> => {
    if (single) return fn(await siteOf(single))
    const lease = await req.pool!.acquire(tag)
    try {
      progress(`${tag}: on ${lease.host.label}`)
      return await fn(await siteOf(lease.host))
    } finally {
      await lease.release()
    }
  }

  // the offset probe runs in every full boot's nvme-integrity check: built here once, handed over by SSH
  const probe = await readFile((await buildProbe(req.probeCacheDir ?? join(tmpdir(), 'cvm-image-probe'))).path)
  const checks: CheckResult[] = []
  const modes: {report: ModeReport; host: ValidationHost}[] = []
  let verdictError: unknown
  try {
    for (const mode of req.modes) {
      const boots: BootPlan[] =
        mode === 'emulated'
          ? [
              ...(req.ukiBoot !== false ? [{name: 'uki', ukiAppend: `${parts.cmdline} swiotlb=force`, forcedSwiotlb: true, full: true} as BootPlan] : []),
              ...(req.diskBoot ? [{name: 'disk', forcedSwiotlb: false, full: false} as BootPlan] : []),
              ...(req.secureBootVars ? [{name: 'secure-boot', forcedSwiotlb: false, full: false} as BootPlan] : []),
            ]
          : // under SEV the firmware measures what it boots: boot the disk as published, SWIOTLB is forced by the kernel
            [{name: 'disk', forcedSwiotlb: false, full: true}]
      // The boots of a mode need nothing of each other (each has its own QEMU, seed, port and
      // snapshot of the read-only disk): they run at once, on one host or spread over a pool, and
      // report in plan order.
      const settled = await Promise.allSettled(
        boots.map((boot) =>
          onSite(bootTag(mode, boot), async (site) => {
            const own: CheckResult[] = []
            const accel = mode === 'emulated' && !site.hostReport.kvm.usable ? 'tcg' : 'kvm'
            const varStore = (boot.name === 'secure-boot' && secureBootStore) || site.plainVars
            const r = await runBoot({req, probe, site, local, mode, accel, boot, seedMethod, parts, ukiImage, varStore, checks: own, log, progress})
            return {r, own, host: site.host}
          }),
        ),
      )
      for (const s of settled) {
        if (s.status === 'fulfilled') {
          modes.push({report: s.value.r, host: s.value.host})
          checks.push(...s.value.own)
        }
      }
      const failed = settled.find((s) => s.status === 'rejected')
      if (failed) throw failed.reason
    }
  } catch (e) {
    verdictError = e
  } finally {
    for (const [i, {report: m, host}] of modes.entries()) {
      // the first boot's console is the stage's serial.log; further boots keep their tag
      const keptLog = join(req.outDir, i === 0 ? 'serial.log' : `serial-${m.boot}.log`)
      await host.getFile(m.serialLog, keptLog).catch(() => {})
      m.serialLog = keptLog
    }
  }
  if (verdictError) throw verdictError

  // a Secure Boot boot that was asked for but could not run is a skipped check, with why
  const secureBootNotRun = req.secureBootNotRun ?? (req.secureBootVars && !req.modes.includes('emulated') ? "Secure Boot is booted in emulated mode only (OVMF's SEV build has no SMM); add --mode emulated" : undefined)
  if (secureBootNotRun) checks.push({mode: req.modes[0], name: 'secure-boot', verdict: 'skip', evidence: `not run: ${secureBootNotRun}`, durationMs: 0})

  const sha256Before = await sha256BeforeP
  const extentAfter = extentBefore && (await extentSha256(req.disk, req.signal))
  const sameExtents = extentBefore !== undefined && extentAfter?.digest === extentBefore.digest
  if (!sameExtents) progress('hashing the disk image after the boots')
  const sha256After = sameExtents ? await sha256NowP : await sha256File(req.disk)
  if (sameExtents && !known && req.sha256MemoDir) await rememberSha256(req.sha256MemoDir, extentBefore, sha256After)
  // remotely the guests booted the uploaded copies: each must be unchanged too
  const remoteSites = (await Promise.all([...sites.values()].map((p) => p.catch(() => undefined)))).filter((site) => site?.host.remote) as Site[]
  const remoteAfter = await Promise.all(remoteSites.map(async (site) => ({label: site.host.label, sha256: (await site.host.exec('sha256sum', ['-b', '--', site.hostDisk])).stdout.split(/\s/)[0]})))
  const copies = remoteAfter.map((r) => r.label).join(', ')
  const unchanged = sha256After === sha256Before && remoteAfter.every((r) => r.sha256 === sha256Before)
  checks.push({
    mode: req.modes[0],
    name: 'image-unchanged',
    durationMs: 0,
    ...(unchanged
      ? {verdict: 'pass', evidence: `sha256 ${sha256After} before and after${sameExtents ? ` (${known ? 'known to the build cache by its extent digest' : 'every byte read during the boots'}; after the boots the same extent digest, ${extentAfter!.allocated} bytes allocated)` : ''}${remoteAfter.length ? ` (and of the ${remoteAfter.length > 1 ? 'copies' : 'copy'} on ${copies} after the boots)` : ''}`}
      : {verdict: 'fail', evidence: `sha256 changed: ${sha256Before} -> ${sha256After}${remoteAfter.map((r) => `, copy on ${r.label}: ${r.sha256}`).join('')}`}),
  })
  // the PCRs cover the UKI only: the release's disk sha256 covers the rest
  if (req.expectedMeasurements) checks.push({mode: req.modes[0], name: 'release-disk', durationMs: 0, ...releaseDiskOutcome(sha256Before, req.expectedMeasurements)})
  const bootToSshMs = modes.find((m) => m.report.bootToSshMs !== undefined)?.report.bootToSshMs
  // the one host, or every host of the pool a boot ran on (each boot's is in its mode report)
  const hostLabel = single ? single.label : [...new Set(modes.map((m) => m.host.label))].join(', ') || 'none'
  const report: ValidationReport = {
    verdict: overallVerdict(checks),
    image: {path: req.disk, sha256Before, sha256After, ukiSha256: uki.sha256, ukiCmdline: parts.cmdline},
    host: hostLabel,
    modes: modes.map((m) => m.report),
    checks,
    timings: {totalMs: Date.now() - started, bootToSshMs},
    startedAt: new Date(started).toISOString(),
  }
  await atomicWriteFile(join(req.outDir, 'report.json'), JSON.stringify(report, null, 2) + '\n')
  await atomicWriteFile(join(req.outDir, 'junit.xml'), junitXml(report))
  return report
}

/** An emulated boot's checks are named <prefix>:<check> and its tag is emulated-<prefix>; the UKI boot's (and every SEV boot's) are plain. */
const BOOT_CHECK_PREFIX: Record<BootPlan['name'], string | undefined> = {uki: undefined, disk: 'disk-boot', 'secure-boot': 'secure-boot'}

interface BootPlan {
  /** uki: -kernel with extra arguments; disk: firmware boots \EFI\BOOT\BOOTX64.EFI; secure-boot: the same under Secure Boot */
  name: 'uki' | 'disk' | 'secure-boot'
  /** the UKI boot's command line (the UKI itself is on the site) */
  ukiAppend?: string
  forcedSwiotlb: boolean
  /** every check; otherwise only what proves the boot (kernel, command line, power-off) */
  full: boolean
}

/** the report's name of a boot: emulated, emulated-disk-boot, emulated-secure-boot, sev */
function bootTag(mode: ValidationMode, plan: BootPlan): string {
  const prefix = mode === 'emulated' ? BOOT_CHECK_PREFIX[plan.name] : undefined
  return prefix ? `${mode}-${prefix}` : mode
}

interface BootArgs {
  req: ValidateRequest
  probe: Buffer
  /** the host it runs on, with the disk there */
  site: Site
  local: ValidationHost
  mode: ValidationMode
  accel: 'tcg' | 'kvm'
  boot: BootPlan
  seedMethod: SeedMethod
  parts: ReturnType<typeof ukiParts>
  /** the UKI's bytes, from which the vTPM's PCRs are predicted */
  ukiImage: Buffer
  /** the boot's OVMF variable store, from which its PCR 7 is predicted */
  varStore: {path: string; bytes?: Buffer}
  checks: CheckResult[]
  log: (line: string) => void
  progress: (line: string) => void
}

/** One QEMU boot: boot to SSH, then the checks of the table that apply to it. QEMU is killed whatever happens. */
async function runBoot(a: BootArgs): Promise<ModeReport> {
  const {req, mode, boot: plan} = a
  // the report's names: emulated, emulated-disk-boot, emulated-secure-boot, sev; a check of the disk boot is disk-boot:<name>
  const {site} = a
  const prefix = mode === 'emulated' ? BOOT_CHECK_PREFIX[plan.name] : undefined
  const tag = bootTag(mode, plan)
  const kind: BootKind = {mode, full: plan.full, secureBoot: plan.name === 'secure-boot'}
  const named = (name: string) => (prefix ? `${prefix}:${name}` : name)
  // a vTPM when the host has swtpm; without one, tpm-pcrs is skipped with why
  const vtpm = site.hostReport.swtpm.version !== undefined
  const boot = await GuestBoot.prepare({
    host: site.host,
    local: a.local,
    tag,
    mode,
    accel: a.accel,
    disk: site.hostDisk,
    kernel: plan.ukiAppend !== undefined ? {path: site.hostUki, append: plan.ukiAppend} : undefined,
    secureBootVars: plan.name === 'secure-boot' ? site.hostSecureBootVars : undefined,
    vtpm,
    work: site.work,
    seed: a.seedMethod,
    templatesDir: req.templatesDir,
    hostname: req.hostname,
    memoryMiB: req.memoryMiB,
    cpus: req.cpus,
    cbitpos: site.hostReport.sev.cbitpos,
    bootTimeoutMs: req.bootTimeoutS * 1000,
    signal: req.signal,
    log: a.log,
    progress: a.progress,
  })
  const report: ModeReport = {mode, boot: tag, host: site.host.label, accel: a.accel, seed: boot.seedDescription, serialLog: boot.serialLog, qemuArgs: boot.qemuArgs}
  const t0 = Date.now()
  try {
    await boot.start()
    try {
      await boot.connect()
    } catch (e) {
      if (req.signal?.aborted) throw e
      // a guest that never answers is a failed boot, reported like any check; the rest did not run
      const tail = tailLines(await boot.serial(), 5).join(' | ')
      a.checks.push({mode, name: named('boot'), verdict: 'fail', evidence: `${(e as Error).message}; serial log ends: ${tail}`, durationMs: Date.now() - t0})
      for (const c of checksFor(kind)) a.checks.push({mode, name: named(c.name), verdict: 'skip', evidence: 'not run: the guest did not boot to SSH', durationMs: 0})
      return report
    }
    report.bootToSshMs = Date.now() - t0
    a.checks.push({mode, name: named('boot'), verdict: 'pass', evidence: `SSH (run key, pinned run host key) answered ${(report.bootToSshMs / 1000).toFixed(1)} s after QEMU started (${a.accel}; seed: ${report.seed})`, durationMs: report.bootToSshMs})
    a.log(`${tag}: SSH answered ${report.bootToSshMs} ms after QEMU started`)
    const ctx: CheckContext = {
      mode,
      get guest() {
        return boot.guest
      },
      machine: boot,
      expected: req.expected ?? {},
      forcedSwiotlb: plan.forcedSwiotlb,
      timeoutMs: CHECK_TIMEOUT_MS,
      uki: a.parts,
      shared: {},
      snpLaunch: mode === 'snp' ? snpLaunchExpectation(req.expectedMeasurements, req.cpus) : undefined,
      probe: a.probe,
      tpm: !vtpm
        ? {notAttached: `${site.host.label} has no ${site.hostReport.swtpm.binary} (package swtpm)`}
        : {expected: pcrExpectation(req, a.ukiImage, {firmwareBootsDisk: plan.ukiAppend === undefined, secureBoot: plan.name === 'secure-boot'}, a.varStore)},
    }
    await runChecks(ctx, kind, {
      timeoutMs: CHECK_TIMEOUT_MS,
      notRun: req.notRun,
      onStart: (name) => a.progress(`${tag}: ${name}`),
      onDone: ({name, durationMs, ...o}) => {
        a.log(`${tag}: ${name}: ${o.verdict}: ${o.evidence}`)
        a.checks.push({mode, name: named(name), ...o, durationMs})
      },
    })
  } finally {
    await boot.stop()
  }
  return report
}

/** What a boot's PCRs must be: the release's values when the request gives them, else those of the UKI on the disk. */
function pcrExpectation(req: ValidateRequest, uki: Buffer, boot: {firmwareBootsDisk: boolean; secureBoot: boolean}, store: {path: string; bytes?: Buffer}): PcrExpectation {
  return req.expectedMeasurements ? expectedPcrsFrom(req.expectedMeasurements.entries, boot, req.expectedMeasurements.source) : expectedPcrs(uki, boot, store)
}

function tailLines(s: string, n: number): string[] {
  return s.trimEnd().split('\n').slice(-n)
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
