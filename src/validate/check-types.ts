import type {ValidationMode} from '../recipe/schema.js'
import type {GuestExec} from './guest.js'

// What a validation check is, takes and gives: shared by the check table (checks.ts) and the checks
// kept in their own files (lifecycle.ts, nvme-probe.ts), which the table imports.

export type CheckVerdict = 'pass' | 'fail' | 'skip'

export interface CheckResult {
  mode: ValidationMode
  name: string
  verdict: CheckVerdict
  /** the line that shows it (or why it was skipped / what went wrong) */
  evidence: string
  durationMs: number
}

/** What the built kernel should report (compile's kernel.json). */
export interface ExpectedKernel {
  release?: string
  version?: string
  /** a dmesg line a marker patch in the series prints */
  marker?: string
}

/** The machine a guest runs in, for the checks that restart or end the guest (kexec, power-off). */
export interface GuestMachine {
  readonly accel: 'tcg' | 'kvm'
  /** why the guest cannot be reached now (set by leaving(), cleared by reconnect()); the checks left are skipped */
  readonly gone: string | undefined
  /** the guest is going away (kexec -e) and may not come back; reason says what then */
  leaving(reason: string): void
  /** after leaving(): drops the old session and waits for the guest's SSH again; ctx.guest is the new session */
  reconnect(): Promise<GuestExec>
  /** QEMU's exit code when it ends (null: killed by a signal) */
  readonly exited: Promise<number | null>
  /** the last lines QEMU printed */
  output(): string
  /** the guest's serial console so far */
  serial(): Promise<string>
}

export interface CheckContext {
  mode: ValidationMode
  /** the guest's shell; after a kexec, the session to the new kernel */
  readonly guest: GuestExec
  machine: GuestMachine
  expected: ExpectedKernel
  /** whether the command line carries swiotlb=force (emulated: added by the validator) */
  forcedSwiotlb: boolean
  timeoutMs: number
  /** the UKI's command line, and its kernel and initrd for kexec when the image has no /boot/vmlinuz-<release> */
  uki: {cmdline: string; linux?: Buffer; initrd?: Buffer}
  /**
   * what a check of this boot leaves for a later one: the O_DIRECT run, made by nvme-integrity, read by
   * swiotlb-bounce; the attestation report, taken by attestation-report, read by launch-measurement
   */
  shared: {directIo?: DirectIoRun; attestation?: AttestationRun}
  /** snp boots: the launch digests predicted for this boot (measure --mode snp), or why there are none */
  snpLaunch?: SnpLaunchExpectation
  /** the static NVMe offset probe (src/validate/probe), built on this machine, handed to the guest for its run only */
  probe?: Buffer
  /** the boot's vTPM: the PCR values predicted for it, or why it has none (tpm-pcrs is skipped then) */
  tpm?: {expected: PcrExpectation} | {notAttached: string}
}

/** What the tpm-pcrs check compares the guest's PCRs with, worked out from the UKI for one boot (src/validate/vtpm.ts). */
export interface PcrExpectation {
  /** PCR 11 after the stub, then after each boot phase systemd-pcrphase may have extended it with when the check runs */
  pcr11: {phase: string; value: string}[]
  /** PCR 4, for a boot where the firmware starts the disk's \EFI\BOOT\BOOTX64.EFI; otherwise why it is not predicted */
  pcr4: {value: string; secureBoot: boolean} | {notPredicted: string}
  /**
   * PCR 7, from the boot's variable store (and under Secure Boot the db entry that verifies the UKI);
   * otherwise why it is not predicted (a store the reader does not know), or the error that kept it from being predicted (the check fails)
   */
  pcr7: {value: string; secureBoot: boolean} | {notPredicted: string} | {error: string}
}

export type Outcome = Omit<CheckResult, 'mode' | 'name' | 'durationMs'>

/** Which boot the checks run in. */
export interface BootKind {
  mode: ValidationMode
  /** every check; otherwise (the emulated boot of the disk alone) only what proves the boot */
  full: boolean
  /** the firmware boots the disk under Secure Boot: the secure-boot check runs too */
  secureBoot?: boolean
}

/** One validation check: its name in the report, the boots it runs in, and what it does. */
export interface Check {
  /** as report.json names it (disk-boot:<name> in the emulated boot of the disk alone, secure-boot:<name> under Secure Boot) */
  name: string
  appliesTo(boot: BootKind): boolean
  run(ctx: CheckContext): Promise<Outcome>
  /** how long it may take, when longer than the default per-check limit */
  timeoutMs?: number
}

export type CheckRun = Outcome & {name: string; durationMs: number}

/** What the O_DIRECT script found (checks.ts parseDirectIo), shared by nvme-integrity and swiotlb-bounce. */
export interface DirectIoRun {
  ok: string[]
  mismatches: string[]
  errors: string[]
  nslabs?: number
  idleUsed?: number
  peakUsed?: number
  samples: number
  hiwaterBefore?: number
  hiwaterAfter?: number
}

/** What the attestation script printed in the guest (src/validate/attestation.ts). */
export interface AttestationRun {
  /** configfs-tsm, or the ioctl on /dev/sev-guest or /dev/tdx_guest */
  method?: string
  /** configfs-tsm's provider: sev_guest, tdx_guest */
  provider?: string
  report?: Buffer
  errors: string[]
  notes: string[]
  /** the 64 bytes the run sent as REPORT_DATA */
  nonce: Buffer
}

/** The SEV-SNP launch digests a boot's MEASUREMENT may equal (lower-case hex), each with what it was computed for; or why none are given. */
export type SnpLaunchExpectation = {digests: {value: string; label: string}[]; source: string} | {notGiven: string}
