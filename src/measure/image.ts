import type {MeasurementEntry} from './entry.js'
import {launchMeasurements, type LaunchMeasureOptions} from './launch.js'
import {pcrMeasurements} from './pcr-entries.js'

/** What to measure: the disk's UKI (its PCRs) and the SEV/SEV-ES launches of the given firmware. */
export interface MeasureImageOptions extends LaunchMeasureOptions {
  /** the raw disk whose UKI's PCRs are predicted; none: the launch digests only */
  disk?: string
  /** the variable store of a Secure Boot boot, for PCR 7 with Secure Boot on (default: Debian's snakeoil store when its db verifies the UKI) */
  secureBootVars?: string
}

/** Every expected value, and the notes that say how to read them: `cvm-image measure` and a release's manifest.json list the same. */
export async function measureImage(o: MeasureImageOptions): Promise<{measurements: MeasurementEntry[]; notes: string[]}> {
  const pcrs = o.disk ? await pcrMeasurements(o.disk, {secureBootVars: o.secureBootVars}) : {entries: [], notes: []}
  const launch = o.firmware.length ? await launchMeasurements(o) : []
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
            ? "A measured direct boot digest binds the firmware, the kernel, initrd and command line (through the SEV hashes table the firmware checks them against), and under SEV-ES the vCPUs' start state; not the disk."
            : "A disk-boot launch digest binds the firmware (and under SEV-ES the vCPUs' start state), not the disk: every disk booted with this firmware gives the same value. What the firmware then loads from the disk is not in it.",
          "SEV's LAUNCH_MEASURE reports HMAC-SHA-256(TIK, 0x04 || API major || API minor || build || policy || digest || MNONCE): compare after recomputing that HMAC with the digest listed here.",
          "Validation boots SEV guests with -cpu host: their SEV-ES digests need the host's own signature (--cpu-type family/model/stepping from its /proc/cpuinfo).",
        ]
      : []),
  ]
  return {measurements: [...pcrs.entries, ...launch], notes}
}
