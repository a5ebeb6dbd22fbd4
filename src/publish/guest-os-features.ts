import {canBeSnpGuest, canBeTdxGuest, canLiveMigrateSev, type GuestSupport} from '../kernel/guest-support.js'
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
  /** what `kernel check` said of the built kernel (configure's record); undefined: SNP, TDX and live migration are not claimed */
  support?: GuestSupport
  /** the compile stage's output as built: gve.ko among its modules, gve.ko in modules.builtin, or neither */
  gve?: 'module' | 'builtin' | 'absent'
  validation: ValidationSummary
}

/**
 * The guestOsFeatures the image can honestly carry. The rule (README "Publishing", docs/design.md "Cloud flags"):
 * - UEFI_COMPATIBLE: always; every cvm-image disk is GPT with a UKI at the removable-media path.
 * - SEV_CAPABLE: the kernel has CONFIG_AMD_MEM_ENCRYPT=y AND either a sev/sev-es validation passed
 *   or the recipe asks for the sev (or sev-es) feature. Emulated validation cannot prove SEV, so
 *   without an SEV host the recipe's request plus the built-in option is the evidence, and the
 *   manifest's validation section shows which modes really ran.
 * - SEV_SNP_CAPABLE: the recorded kernel check says the built kernel can be an SNP guest (canBeSnpGuest:
 *   sev-snp and sev-guest supported, kernel 6.1+).
 * - TDX_CAPABLE: the recorded kernel check says tdx is supported (canBeTdxGuest).
 * - SEV_LIVE_MIGRATABLE_V2: SEV_CAPABLE, and the recorded check says sev-live-migration is supported on
 *   a kernel GCE takes for it (canLiveMigrateSev: 6.6+ or the 6.1 LTS line).
 * - GVNIC: the GVE driver was built (gve.ko among the compile stage's modules, or built in) and the .config has it.
 * - VIRTIO_SCSI_MULTIQUEUE, IDPF: their drivers (SCSI_VIRTIO, IDPF) are in the config (y or m).
 */
export function guestOsFeatures(e: FeatureEvidence): GuestOsFeature[] {
  const out: GuestOsFeature[] = [{type: 'UEFI_COMPATIBLE', reason: 'GPT disk booting a UKI from \\EFI\\BOOT\\BOOTX64.EFI'}]
  const c = e.config
  if (!c) return out
  const asks = (f: string) => e.recipeFeatures.includes(f)
  const passedModes = e.validation.status === 'passed' ? new Set(e.validation.checks.filter((x) => x.verdict === 'pass').map((x) => x.mode)) : new Set<string>()

  let sev = false
  if (isBuiltIn(c, 'CONFIG_AMD_MEM_ENCRYPT')) {
    const validatedUnder = ['sev-es', 'sev'].find((m) => passedModes.has(m))
    if (validatedUnder) out.push({type: 'SEV_CAPABLE', reason: `CONFIG_AMD_MEM_ENCRYPT=y and validation passed under ${validatedUnder}`})
    else if (asks('sev') || asks('sev-es')) out.push({type: 'SEV_CAPABLE', reason: `CONFIG_AMD_MEM_ENCRYPT=y and the recipe asks for feature ${asks('sev') ? 'sev' : 'sev-es'} (not validated on an SEV host)`})
    sev = out.some((f) => f.type === 'SEV_CAPABLE')
  }
  const snp = canBeSnpGuest(e.support)
  if (snp.ok) out.push({type: 'SEV_SNP_CAPABLE', reason: `kernel check: ${snp.reason}`})
  const migrate = canLiveMigrateSev(e.support)
  if (sev && migrate.ok) out.push({type: 'SEV_LIVE_MIGRATABLE_V2', reason: `kernel check: ${migrate.reason}`})
  const tdx = canBeTdxGuest(e.support)
  if (tdx.ok) out.push({type: 'TDX_CAPABLE', reason: `kernel check: ${tdx.reason}`})
  if (isEnabled(c, 'CONFIG_GVE') && e.gve && e.gve !== 'absent') out.push({type: 'GVNIC', reason: `CONFIG_GVE=${c.get('CONFIG_GVE')}, ${e.gve === 'module' ? 'gve.ko built' : 'built in'}`})
  const drivers: [GuestOsFeature['type'], string][] = [
    ['VIRTIO_SCSI_MULTIQUEUE', 'CONFIG_SCSI_VIRTIO'],
    ['IDPF', 'CONFIG_IDPF'],
  ]
  for (const [type, option] of drivers) {
    if (isEnabled(c, option)) out.push({type, reason: `${option}=${c.get(option)}`})
  }
  return out
}
