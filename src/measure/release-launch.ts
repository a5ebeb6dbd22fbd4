import {existsSync} from 'node:fs'

import {OVMF_CODE, OVMF_SNP_BIOS} from '../validate/ovmf-files.js'
import {DEFAULT_CPU_TYPE} from './cpu-types.js'
import {DEFAULT_SNP_GUEST_FEATURES, SEV_MODES, type LaunchMeasureOptions} from './launch.js'
import {VMSA_FORMS} from './vmsa.js'

export interface ReleaseLaunchInput {
  /** the recipe's validate.cpus */
  vcpus: number
  /** the built kernel can be an SEV-SNP guest (kernel check's SNP guest line); false: no SNP digests */
  snpGuest: boolean
  /** whether a firmware file is on this machine (tests give their own) */
  present?: (path: string) => boolean
}

/**
 * The launch digests a release's manifest lists (docs/measurements.md "The output"): SEV and SEV-ES
 * of the firmware validation boots, for the recipe's vCPU count, vCPU type EPYC-v4 and every VMSA
 * form; and, only for a kernel that can be an SEV-SNP guest, the SEV-SNP digest of Debian's -bios
 * OVMF for QEMU with its default guest features. Each digest left out is a note saying why.
 */
export function releaseLaunchOptions(i: ReleaseLaunchInput): {options: LaunchMeasureOptions; notes: string[]} {
  const present = i.present ?? existsSync
  const notes: string[] = []
  const firmware = present(OVMF_CODE) ? [OVMF_CODE] : []
  if (!firmware.length) notes.push(`no SEV launch digests: this machine has no ${OVMF_CODE} (package ovmf), the firmware validation boots; \`cvm-image measure\` on a machine with it lists them`)
  let snpFirmware: string[] = []
  if (!i.snpGuest) notes.push('no SEV-SNP launch digests: the kernel cannot be an SEV-SNP guest (kernel check: SNP guest support is not built in)')
  else if (present(OVMF_SNP_BIOS)) snpFirmware = [OVMF_SNP_BIOS]
  else notes.push(`no SEV-SNP launch digests: this machine has no ${OVMF_SNP_BIOS} (package ovmf), the -bios image of an SEV-SNP guest; \`cvm-image measure --mode snp\` on a machine with it lists them`)
  return {
    options: {
      firmware,
      snpFirmware,
      modes: [...SEV_MODES, ...(snpFirmware.length ? (['snp'] as const) : [])],
      cpus: [i.vcpus],
      cpuTypes: [DEFAULT_CPU_TYPE],
      vmsaForms: VMSA_FORMS,
      guestFeatures: [DEFAULT_SNP_GUEST_FEATURES],
      vmms: ['qemu'],
    },
    notes,
  }
}
