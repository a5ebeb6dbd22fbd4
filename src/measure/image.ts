import type {MeasurementEntry} from './entry.js'
import {launchMeasurements, type LaunchMeasureOptions} from './launch.js'
import {pcrMeasurements} from './pcr-entries.js'

/** What to measure: the disk's UKI (its PCRs) and the SEV, SEV-ES and SEV-SNP launches of the given firmware. */
export interface MeasureImageOptions extends LaunchMeasureOptions {
  /** the raw disk whose UKI's PCRs are predicted; none: the launch digests only */
  disk?: string
  /** the variable store of a Secure Boot boot, for PCR 7 with Secure Boot on (default: Debian's snakeoil store when its db verifies the UKI) */
  secureBootVars?: string
}

/** Every expected value, and the notes that say how to read them: `cvm-image measure` and a release's manifest.json list the same. */
export async function measureImage(o: MeasureImageOptions): Promise<{measurements: MeasurementEntry[]; notes: string[]}> {
  const pcrs = o.disk ? await pcrMeasurements(o.disk, {secureBootVars: o.secureBootVars}) : {entries: [], notes: []}
  const launch = o.firmware.length || o.snpFirmware?.length ? await launchMeasurements(o) : []
  const signed = pcrs.entries.some((m) => m.kind === 'tpm-pcr4' && m.params.secureBoot === 'on')
  const notes = [
    ...(pcrs.entries.length
      ? [
          `PCR 11 depends on the UKI alone. PCR 4 also depends on the firmware's own events (edk2's standard ones assumed) and on the disk being the first boot option tried; PCR 7 on the firmware's variable store (its Secure Boot keys). PCR 4 and 7 are given for Secure Boot off${signed ? ', and (the UKI is signed) on' : ''}.`,
          ...pcrs.notes,
        ]
      : []),
    ...(launch.length
      ? [
          o.kernelBoot
            ? "A measured direct boot digest binds the firmware, the kernel, initrd and command line (through the SEV hashes table the firmware checks them against), and under SEV-ES and SEV-SNP the vCPUs' start state; not the disk."
            : "A disk-boot launch digest binds the firmware (and under SEV-ES and SEV-SNP the vCPUs' start state), not the disk: every disk booted with this firmware gives the same value. What the firmware then loads from the disk is not in it.",
        ]
      : []),
    ...(launch.some((m) => m.kind !== 'snp-launch')
      ? [
          "SEV's LAUNCH_MEASURE reports HMAC-SHA-256(TIK, 0x04 || API major || API minor || build || policy || digest || MNONCE): compare after recomputing that HMAC with the digest listed here.",
          "Validation boots SEV guests with -cpu host: their SEV-ES digests need the host's own signature (--cpu-type family/model/stepping from its /proc/cpuinfo).",
        ]
      : []),
    ...(launch.some((m) => m.kind === 'snp-launch')
      ? [
          "An SEV-SNP digest is the MEASUREMENT field of the guest's attestation report (48 bytes at offset 0x90), compared as it is; the guest policy, host data and ID block are other fields of the report, not in it.",
          "An SEV-SNP digest depends on the SEV features every vCPU starts with (--guest-features): QEMU asks KVM for SNPActive alone (0x1); a VMM or host that turns on more (with DebugSwap: 0x21) gives another digest.",
        ]
      : []),
  ]
  return {measurements: [...pcrs.entries, ...launch], notes}
}
