import {join} from 'node:path'

import {HostError} from '../errors.js'
import type {ValidationMode} from '../recipe/schema.js'
import {LocalHost, type ValidationHost} from './host.js'
import {openValidationHost, type HostTarget} from './open-host.js'
import {OVMF_CODE, OVMF_CODE_SECBOOT, OVMF_SNP_BIOS, OVMF_VARS} from './ovmf-files.js'

export const QEMU_BINARY = 'qemu-system-x86_64'
export {OVMF_CODE, OVMF_CODE_SECBOOT, OVMF_SNP_BIOS, OVMF_TDX_BIOS, OVMF_VARS, OVMF_VARS_SNAKEOIL, SNAKEOIL_CERT} from './ovmf-files.js'
/** the TPM 2.0 emulator every boot gets as its vTPM (QEMU's tpm-crb), when the host has it (src/validate/vtpm.ts) */
export const SWTPM_BINARY = 'swtpm'

/** What a host can run, for `doctor` and before every validation. */
export interface HostReport {
  host: string
  cpuVendor?: string
  kvm: {device: boolean; usable: boolean; detail: string}
  sev: {
    /** /sys/module/kvm_amd/parameters/{sev,sev_es,sev_snp} */
    kvmAmd: {sev: boolean; sevEs: boolean; sevSnp: boolean; loaded: boolean}
    devSev: boolean
    /** dmesg lines "SEV enabled (ASIDs a - b)", "SEV-ES enabled (ASIDs 1 - n)", "SEV-SNP enabled (ASIDs 1 - n)" */
    asids: {sev?: string; sevEs?: string; sevSnp?: string}
    /**
     * the AMD secure processor's firmware as the ccp driver logged it at SNP_INIT: "SEV-SNP API:1.55 build:21"
     * (5.11+ hosts log "SEV API:" for SEV alone); undefined when dmesg holds neither line
     */
    firmware?: {snp: boolean; api: string; line: string}
    /** CPUID 0x8000001F EBX[5:0] */
    cbitpos?: number
  }
  /** /sys/module/kvm_intel/parameters/tdx (6.16+ hosts: Y only once the TDX module is initialised) */
  tdx: {kvmIntel: {loaded: boolean; tdx: boolean}}
  qemu: {binary: string; version?: string}
  /** secureBootCode: OVMF_CODE_SECBOOT (built with SMM) is there, which a Secure Boot boot needs */
  ovmf: {code: string; vars: string; present: boolean; version?: string; secureBootCode: boolean; bios: {path: string; present: boolean}}
  /** swtpm, the vTPM of every boot; without it the tpm-pcrs check is skipped, saying so */
  swtpm: {binary: string; version?: string}
  /** per mode: what is missing for it (empty: the mode can run here) */
  modes: Record<ValidationMode, {available: boolean; missing: string[]}>
}

export interface ProbeOptions {
  /** run the KVM probe guest (a few seconds; skipped when /dev/kvm is absent) */
  probeKvm?: boolean
  signal?: AbortSignal
}

/**
 * Probes a host's ability to validate: KVM that really runs a guest, SEV/SEV-ES/SEV-SNP in kvm_amd,
 * /dev/sev, ASIDs, the SEV firmware, C-bit position, TDX in kvm_intel, QEMU and OVMF. The service behind `cvm-image doctor [--host]`.
 */
export async function probeHost(host: ValidationHost = new LocalHost(), opts: ProbeOptions = {}): Promise<HostReport> {
  const param = async (name: string, module = 'kvm_amd') => {
    const v = (await host.readFile(`/sys/module/${module}/parameters/${name}`))?.toString().trim()
    return v === 'Y' || v === '1'
  }
  const exists = async (p: string) => (await host.exec('test', ['-e', p])).exitCode === 0
  const loaded = await exists('/sys/module/kvm_amd')
  const kvmAmd = {loaded, sev: await param('sev'), sevEs: await param('sev_es'), sevSnp: await param('sev_snp')}
  const kvmIntel = {loaded: await exists('/sys/module/kvm_intel'), tdx: await param('tdx', 'kvm_intel')}
  const devSev = await exists('/dev/sev')
  const cpuinfo = (await host.readFile('/proc/cpuinfo'))?.toString() ?? ''
  const cpuVendor = /^vendor_id\s*:\s*(\S+)/m.exec(cpuinfo)?.[1]

  const dmesg = (await host.exec('dmesg', [], {signal: opts.signal})).stdout
  const asids = {
    sev: /SEV enabled \(ASIDs [^)]*\)/.exec(dmesg)?.[0],
    sevEs: /SEV-ES enabled \(ASIDs [^)]*\)/.exec(dmesg)?.[0],
    sevSnp: /SEV-SNP enabled \(ASIDs [^)]*\)/.exec(dmesg)?.[0],
  }
  const firmware = sevFirmware(dmesg)
  const leaf = cpuVendor === 'AuthenticAMD' ? await readCpuidLeaf(host, 0x8000001f) : undefined
  // EAX bit 1: the CPU supports SEV; without it EBX holds no C-bit position
  const sevCpu = leaf !== undefined && (leaf.eax & 0x2) !== 0
  const cbitpos = sevCpu ? leaf.ebx & 0x3f : undefined

  const qv = await host.exec(QEMU_BINARY, ['--version'])
  const qemu = {binary: QEMU_BINARY, version: qv.exitCode === 0 ? /version (\S+)/.exec(qv.stdout)?.[1] : undefined}
  const ovmfPresent = (await exists(OVMF_CODE)) && (await exists(OVMF_VARS))
  const ov = await host.exec('dpkg-query', ['-W', '-f', '${Version}', 'ovmf'])
  const ovmf = {code: OVMF_CODE, vars: OVMF_VARS, present: ovmfPresent, version: ov.exitCode === 0 && ov.stdout ? ov.stdout : undefined, secureBootCode: await exists(OVMF_CODE_SECBOOT), bios: {path: OVMF_SNP_BIOS, present: await exists(OVMF_SNP_BIOS)}}
  const sv = await host.exec(SWTPM_BINARY, ['--version'])
  const swtpm = {binary: SWTPM_BINARY, version: sv.exitCode === 0 ? /version (\d[\w.]*)/i.exec(sv.stdout)?.[1] ?? 'unknown' : undefined}

  const kvmDevice = await exists('/dev/kvm')
  let kvm = {device: kvmDevice, usable: false, detail: '/dev/kvm is absent'}
  if (kvmDevice && qemu.version && opts.probeKvm !== false) kvm = {device: true, ...(await probeKvm(host, opts.signal))}
  else if (kvmDevice) kvm = {device: true, usable: false, detail: 'not probed'}

  const report: Omit<HostReport, 'modes'> = {host: host.label, cpuVendor, kvm, sev: {kvmAmd, devSev, asids, firmware, cbitpos}, tdx: {kvmIntel}, qemu, ovmf, swtpm}
  return {...report, modes: modeSupport(report)}
}

/** What each mode lacks on a probed host. Pure, so the decision is testable with any host. */
export function modeSupport(r: Omit<HostReport, 'modes'>): HostReport['modes'] {
  const common: string[] = []
  if (!r.qemu.version) common.push(`${r.qemu.binary} (package qemu-system-x86)`)
  if (!r.ovmf.present) common.push(`OVMF firmware at ${r.ovmf.code} and ${r.ovmf.vars} (package ovmf)`)
  const sev = [...common]
  if (r.cpuVendor !== 'AuthenticAMD') sev.push(`an AMD CPU (this host's CPU vendor is ${r.cpuVendor ?? 'unknown'})`)
  if (!r.kvm.usable) sev.push(`working KVM (${r.kvm.detail})`)
  if (!r.sev.kvmAmd.loaded) sev.push('the kvm_amd module (/sys/module/kvm_amd is absent)')
  else if (!r.sev.kvmAmd.sev) sev.push('SEV enabled in kvm_amd (/sys/module/kvm_amd/parameters/sev is not Y or 1)')
  if (!r.sev.devSev) sev.push('/dev/sev (the AMD PSP/CCP driver)')
  if (r.sev.cbitpos === undefined) sev.push('the C-bit position (CPUID 0x8000001F via /dev/cpu/0/cpuid or the cpuid tool)')
  const sevEs = [...sev]
  if (r.sev.kvmAmd.loaded && !r.sev.kvmAmd.sevEs) sevEs.push('SEV-ES enabled in kvm_amd (/sys/module/kvm_amd/parameters/sev_es is not Y or 1)')
  const snp = [...sevEs]
  if (r.sev.kvmAmd.loaded && !r.sev.kvmAmd.sevSnp) snp.push('SEV-SNP enabled in kvm_amd (/sys/module/kvm_amd/parameters/sev_snp is not Y or 1; kvm_amd sets it only once the SEV firmware has initialised SNP, on a 6.11+ host kernel)')
  const fw = r.sev.firmware
  if (fw?.snp && !apiAtLeast(fw.api, SNP_MIN_FIRMWARE_API)) snp.push(`SEV firmware with SNP API ${SNP_MIN_FIRMWARE_API} or later (dmesg: ${fw.line})`)
  else if (!r.sev.kvmAmd.sevSnp && !fw?.snp) snp.push(`SEV firmware with SNP initialised (no "SEV-SNP API:" line from the ccp driver in dmesg${fw ? `, only "${fw.line}"` : ''}; SNP needs API ${SNP_MIN_FIRMWARE_API} or later and SNP enabled in the BIOS)`)
  snp.push(...needsQemu(r.qemu, 'snp'))
  if (!r.ovmf.bios.present) snp.push(`OVMF as one image at ${r.ovmf.bios.path} (package ovmf), the -bios an SNP guest boots`)
  const tdx = [...common]
  if (r.cpuVendor !== 'GenuineIntel') tdx.push(`an Intel CPU (this host's CPU vendor is ${r.cpuVendor ?? 'unknown'})`)
  if (!r.kvm.usable) tdx.push(`working KVM (${r.kvm.detail})`)
  if (!r.tdx.kvmIntel.loaded) tdx.push('the kvm_intel module (/sys/module/kvm_intel is absent)')
  else if (!r.tdx.kvmIntel.tdx) tdx.push('TDX enabled in kvm_intel (/sys/module/kvm_intel/parameters/tdx is not Y or 1; a 6.16+ host kernel sets it once the TDX module is initialised)')
  tdx.push(...needsQemu(r.qemu, 'tdx'))
  if (!r.ovmf.bios.present) tdx.push(`OVMF as one image at ${r.ovmf.bios.path} (package ovmf), the -bios (TDVF) a TDX guest boots`)
  const m = (missing: string[]) => ({available: missing.length === 0, missing})
  return {emulated: m(common), sev: m(sev), 'sev-es': m(sevEs), snp: m(snp), tdx: m(tdx)}
}

/**
 * The first QEMU release with each mode's guest object: sev-snp-guest came in 9.1, tdx-guest in
 * 10.1 (docs/validation-modes.md). Debian 12 ships 7.2, Debian 13 10.0.
 */
export const QEMU_MIN_VERSION: Record<'snp' | 'tdx', string> = {snp: '9.1', tdx: '10.1'}
/** the SEV firmware API the kernel's ccp driver needs before it initialises SNP (drivers/crypto/ccp/sev-dev.c SNP_MIN_API_MAJOR/MINOR) */
export const SNP_MIN_FIRMWARE_API = '1.51'

function needsQemu(q: HostReport['qemu'], mode: 'snp' | 'tdx'): string[] {
  const min = QEMU_MIN_VERSION[mode]
  const object = mode === 'snp' ? 'sev-snp-guest' : 'tdx-guest'
  if (!q.version) return [] // named once, with the package, in common
  return apiAtLeast(q.version, min) ? [] : [`QEMU ${min} or later for ${object} (this host's ${q.binary} is ${q.version})`]
}

/** "1.55" >= "1.51", "10.0.2" < "10.1": numeric major.minor */
function apiAtLeast(have: string, want: string): boolean {
  const [a = 0, b = 0] = have.split('.').map((x) => Number.parseInt(x, 10))
  const [c = 0, d = 0] = want.split('.').map((x) => Number.parseInt(x, 10))
  return a > c || (a === c && b >= d)
}

/** The ccp driver's firmware line: "SEV-SNP API:1.55 build:21" once SNP is initialised (6.11+), else "SEV API:1.49 build:6". */
export function sevFirmware(dmesg: string): HostReport['sev']['firmware'] {
  const snp = /SEV-SNP API:(\d+\.\d+) build:\d+/.exec(dmesg)
  if (snp) return {snp: true, api: snp[1], line: snp[0]}
  const sev = /SEV API:(\d+\.\d+) build:\d+/.exec(dmesg)
  return sev ? {snp: false, api: sev[1], line: sev[0]} : undefined
}

const MODE_HOST: Record<Exclude<ValidationMode, 'emulated'>, string> = {
  sev: 'an AMD host with SEV enabled',
  'sev-es': 'an AMD host with SEV-ES enabled',
  snp: `an AMD host with SEV-SNP enabled and QEMU ${QEMU_MIN_VERSION.snp}+`,
  tdx: `an Intel host with TDX enabled and QEMU ${QEMU_MIN_VERSION.tdx}+`,
}

/** Throws a HostError naming everything the host lacks for a mode. Never a silent fallback. */
export function requireMode(r: HostReport, mode: ValidationMode): void {
  const {missing} = r.modes[mode]
  if (missing.length === 0) return
  throw new HostError(`validation mode ${mode} cannot run on ${r.host}: it lacks ${missing.join('; ')}`, {
    details: missing.map((x) => `  missing: ${x}`),
    hint:
      mode === 'emulated'
        ? 'install qemu-system-x86 and ovmf (`cvm-image doctor --install`)'
        : `run on ${MODE_HOST[mode]} (--host user@host), or use --mode emulated`,
  })
}

/** One CPUID leaf through the cpuid driver (file offset = leaf), or the cpuid tool. */
async function readCpuidLeaf(host: ValidationHost, leaf: number): Promise<{eax: number; ebx: number; ecx: number; edx: number} | undefined> {
  const od = await host.exec('od', ['-An', '-tx4', '-v', '-j', String(leaf), '-N', '16', '/dev/cpu/0/cpuid'])
  const words = od.stdout.trim().split(/\s+/).filter(Boolean)
  if (od.exitCode === 0 && words.length === 4) {
    const [eax, ebx, ecx, edx] = words.map((w) => Number.parseInt(w, 16))
    return {eax, ebx, ecx, edx}
  }
  const tool = await host.exec('cpuid', ['-1', '-r', '-l', `0x${leaf.toString(16)}`])
  const m = /eax=0x([0-9a-f]+) ebx=0x([0-9a-f]+) ecx=0x([0-9a-f]+) edx=0x([0-9a-f]+)/.exec(tool.stdout)
  if (tool.exitCode === 0 && m) return {eax: Number.parseInt(m[1], 16), ebx: Number.parseInt(m[2], 16), ecx: Number.parseInt(m[3], 16), edx: Number.parseInt(m[4], 16)}
  return undefined
}

const KVM_PROBE_TIMEOUT_MS = 20_000

/**
 * Starts OVMF under KVM with no disk: a KVM that runs guests gets OVMF to its boot manager, which
 * says "BdsDxe" on the serial port within seconds. A broken KVM (e.g. a shim that can run real-mode
 * code but not OVMF) stops with "KVM internal error" or hangs; both count as unusable.
 */
async function probeKvm(host: ValidationHost, signal?: AbortSignal): Promise<{usable: boolean; detail: string}> {
  const dir = await host.tempDir()
  const vars = join(dir, 'kvm-probe-vars.fd')
  const serial = join(dir, 'kvm-probe-serial.log')
  const varsData = await host.readFile(OVMF_VARS)
  if (!varsData) return {usable: false, detail: `not probed: ${OVMF_VARS} is missing`}
  await host.writeFile(vars, varsData)
  const qemu = host.spawn(QEMU_BINARY, [
    '-accel', 'kvm', '-machine', 'q35', '-m', '256', '-display', 'none', '-nodefaults', '-no-user-config', '-no-reboot',
    '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`, '-drive', `if=pflash,format=raw,unit=1,file=${vars}`,
    '-serial', `file:${serial}`,
  ])
  const deadline = Date.now() + KVM_PROBE_TIMEOUT_MS
  let exited = false
  void qemu.exited.then(() => (exited = true))
  try {
    while (Date.now() < deadline && !signal?.aborted) {
      if ((await host.readFile(serial))?.includes('BdsDxe')) return {usable: true, detail: 'OVMF reached its boot manager under KVM'}
      const err = qemu.output().split('\n').find((l) => /KVM internal error|Could not access KVM|failed to initialize kvm/i.test(l))
      if (err) return {usable: false, detail: `OVMF failed under KVM: ${err.trim()}`}
      if (exited) return {usable: false, detail: `QEMU with KVM exited early: ${qemu.output().trim().split('\n').pop() ?? ''}`}
      await new Promise((r) => setTimeout(r, 250))
    }
    return {usable: false, detail: `OVMF did not reach its boot manager under KVM within ${KVM_PROBE_TIMEOUT_MS / 1000} s`}
  } finally {
    await qemu.kill()
  }
}

/**
 * `cvm-image doctor [--host user@host --host-key SHA256:...|--known-hosts FILE]`: opens the host (this
 * machine when target.host is unset; a remote one only with its key pinned), probes it, closes it.
 */
export async function probeValidationHost(target: HostTarget = {}): Promise<HostReport> {
  const host = await openValidationHost(target)
  try {
    return await probeHost(host, {signal: target.signal})
  } finally {
    await host.cleanup()
  }
}

/** The report as lines for people (doctor's text output). */
export function describeHostReport(r: HostReport): string[] {
  const yn = (b: boolean) => (b ? 'yes' : 'no')
  const lines = [
    `validation host ${r.host}: CPU ${r.cpuVendor ?? 'unknown'}, QEMU ${r.qemu.version ?? 'MISSING'}, OVMF ${r.ovmf.present ? (r.ovmf.version ?? 'present') : 'MISSING'}`,
    `  OVMF with SMM (Secure Boot boots): ${r.ovmf.secureBootCode ? 'yes' : `no (${OVMF_CODE_SECBOOT})`}; swtpm (vTPM, tpm-pcrs check): ${r.swtpm.version ?? 'MISSING (package swtpm)'}`,
    `  KVM: ${r.kvm.device ? (r.kvm.usable ? 'usable' : 'NOT usable') : 'absent'} (${r.kvm.detail})`,
    `  kvm_amd: ${r.sev.kvmAmd.loaded ? `sev=${yn(r.sev.kvmAmd.sev)} sev_es=${yn(r.sev.kvmAmd.sevEs)} sev_snp=${yn(r.sev.kvmAmd.sevSnp)}` : 'not loaded'}; /dev/sev: ${yn(r.sev.devSev)}; C-bit: ${r.sev.cbitpos ?? 'n/a'}; SEV firmware: ${r.sev.firmware?.line ?? 'not in dmesg'}`,
    `  kvm_intel: ${r.tdx.kvmIntel.loaded ? `tdx=${yn(r.tdx.kvmIntel.tdx)}` : 'not loaded'}; OVMF one image (-bios, snp and tdx): ${r.ovmf.bios.present ? r.ovmf.bios.path : `no (${r.ovmf.bios.path})`}`,
  ]
  const asids = [r.sev.asids.sev, r.sev.asids.sevEs, r.sev.asids.sevSnp].filter(Boolean)
  if (asids.length) lines.push(`  ASIDs: ${asids.join('; ')}`)
  for (const [mode, m] of Object.entries(r.modes)) lines.push(`  mode ${mode}: ${m.available ? 'available' : `unavailable: missing ${m.missing.join('; ')}`}`)
  return lines
}
