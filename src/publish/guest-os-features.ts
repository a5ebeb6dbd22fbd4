import {isBuiltIn, isEnabled, type KernelConfig} from './kernel-config.js'
import type {ValidationSummary} from './validation-gate.js'

/** A GCE guestOsFeatures entry with the reason cvm-image claims it. */
export interface GuestOsFeature {
  type: 'UEFI_COMPATIBLE' | 'SEV_CAPABLE' | 'SEV_SNP_CAPABLE' | 'SEV_LIVE_MIGRATABLE_V2' | 'TDX_CAPABLE' | 'GVNIC' | 'VIRTIO_SCSI_MULTIQUEUE' | 'IDPF'
  reason: string
}

export interface FeatureEvidence {
  /** the built kernel's .config; undefined when the record has none (then only UEFI is claimed) */
  config?: KernelConfig
  /** recipe.kernel.config.features */
  recipeFeatures: readonly string[]
  /** the kernel version, e.g. 6.1.192 */
  kernelVersion?: string
  validation: ValidationSummary
}

function atLeast(version: string | undefined, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(version ?? '')
  return !!m && (Number(m[1]) > major || (Number(m[1]) === major && Number(m[2]) >= minor))
}

/**
 * The guestOsFeatures the image can honestly carry. The rule (README "Publishing"):
 * - UEFI_COMPATIBLE: always; every cvm-image disk is GPT with a UKI at the removable-media path.
 * - SEV_CAPABLE: the kernel has CONFIG_AMD_MEM_ENCRYPT=y AND either a sev/sev-es validation passed
 *   or the recipe asks for the sev (or sev-es) feature. Emulated validation cannot prove SEV, so
 *   without an SEV host the recipe's request plus the built-in option is the evidence, and the
 *   manifest's validation section shows which modes really ran.
 * - SEV_SNP_CAPABLE: AMD_MEM_ENCRYPT=y, SEV_GUEST y/m, kernel 5.19+, and the recipe asks for sev-snp.
 * - TDX_CAPABLE: INTEL_TDX_GUEST=y and the recipe asks for tdx.
 * - GVNIC, VIRTIO_SCSI_MULTIQUEUE, IDPF: their drivers (GVE, SCSI_VIRTIO, IDPF) are in the config (y or m).
 * - SEV_LIVE_MIGRATABLE_V2: never claimed; nothing here can test migration.
 */
export function guestOsFeatures(e: FeatureEvidence): GuestOsFeature[] {
  const out: GuestOsFeature[] = [{type: 'UEFI_COMPATIBLE', reason: 'GPT disk booting a UKI from \\EFI\\BOOT\\BOOTX64.EFI'}]
  const c = e.config
  if (!c) return out
  const asks = (f: string) => e.recipeFeatures.includes(f)
  const passedModes = e.validation.status === 'passed' ? new Set(e.validation.checks.filter((x) => x.verdict === 'pass').map((x) => x.mode)) : new Set<string>()

  if (isBuiltIn(c, 'CONFIG_AMD_MEM_ENCRYPT')) {
    const validatedUnder = ['sev-es', 'sev'].find((m) => passedModes.has(m))
    if (validatedUnder) out.push({type: 'SEV_CAPABLE', reason: `CONFIG_AMD_MEM_ENCRYPT=y and validation passed under ${validatedUnder}`})
    else if (asks('sev') || asks('sev-es')) out.push({type: 'SEV_CAPABLE', reason: `CONFIG_AMD_MEM_ENCRYPT=y and the recipe asks for feature ${asks('sev') ? 'sev' : 'sev-es'} (not validated on an SEV host)`})
    if (isEnabled(c, 'CONFIG_SEV_GUEST') && atLeast(e.kernelVersion, 5, 19) && asks('sev-snp')) {
      out.push({type: 'SEV_SNP_CAPABLE', reason: `CONFIG_SEV_GUEST=${c.get('CONFIG_SEV_GUEST')} on kernel ${e.kernelVersion} and the recipe asks for sev-snp`})
    }
  }
  if (isBuiltIn(c, 'CONFIG_INTEL_TDX_GUEST') && asks('tdx')) out.push({type: 'TDX_CAPABLE', reason: 'CONFIG_INTEL_TDX_GUEST=y and the recipe asks for tdx'})
  const drivers: [GuestOsFeature['type'], string][] = [
    ['GVNIC', 'CONFIG_GVE'],
    ['VIRTIO_SCSI_MULTIQUEUE', 'CONFIG_SCSI_VIRTIO'],
    ['IDPF', 'CONFIG_IDPF'],
  ]
  for (const [type, option] of drivers) {
    if (isEnabled(c, option)) out.push({type, reason: `${option}=${c.get(option)}`})
  }
  return out
}
