import type {FeatureStatus, KernelCheckResult} from './check.js'
import {atLeast, lineOf, parseVersion} from './version.js'

/**
 * The features a build records for its kernel, whatever the recipe asks for: what the cloud flags
 * (guestOsFeatures) and the SNP launch digests of a release follow (docs/design.md "Cloud flags").
 */
export const RECORDED_FEATURES = ['sev', 'sev-es', 'sev-snp', 'sev-guest', 'tdx', 'tdx-guest-driver', 'unaccepted-memory', 'tsm-reports', 'sev-live-migration', 'gvnic'] as const

/** What `kernel check` said of the built kernel (its patched tree and final .config), as configure records it. */
export interface GuestSupport {
  /** the tree's version, e.g. 6.1.176 */
  version: string
  features: Array<{feature: string; status: FeatureStatus; reason: string}>
}

/** A yes or no with the reason, for a manifest or a log line. */
export interface Verdict {
  ok: boolean
  reason: string
}

export function toGuestSupport(r: KernelCheckResult): GuestSupport {
  return {version: r.version, features: r.features.map((f) => ({feature: f.feature, status: f.status, reason: f.reason}))}
}

/** Whether the recorded check says the built kernel supports a feature, and why (or why not). */
export function supports(s: GuestSupport | undefined, feature: string): Verdict {
  if (!s) return {ok: false, reason: 'the build recorded no kernel check (built by an older cvm-image: rebuild it)'}
  const f = s.features.find((x) => x.feature === feature)
  if (!f) return {ok: false, reason: `the build's kernel check has no feature ${feature}`}
  return {ok: f.status === 'supported', reason: `${feature} ${f.status}: ${f.reason}`}
}

function all(s: GuestSupport | undefined, features: string[]): Verdict {
  const v = features.map((f) => supports(s, f))
  const no = v.find((x) => !x.ok)
  return no ?? {ok: true, reason: v.map((x) => x.reason).join('; ')}
}

/**
 * "This kernel can be an SNP guest": the built kernel has the SNP guest (sev-snp) and its
 * attestation driver (sev-guest), and is 6.1 or later (GCE's minimum for SNP: 6.1 LTS). The release's
 * SEV_SNP_CAPABLE flag and its SNP launch digests both follow it.
 */
export function canBeSnpGuest(s: GuestSupport | undefined): Verdict {
  const v = all(s, ['sev-snp', 'sev-guest'])
  if (!v.ok || !s) return v
  if (!atLeast(s.version, '6.1')) return {ok: false, reason: `kernel ${s.version}: GCE asks for 6.1 LTS or later for SEV-SNP`}
  return v
}

/** The built kernel has the TDX guest (its attestation driver and configfs-tsm are said apart: tdx-guest-driver, tsm-reports). */
export function canBeTdxGuest(s: GuestSupport | undefined): Verdict {
  return all(s, ['tdx'])
}

/**
 * SEV live migration: the guest's migration support (sev-live-migration) in a kernel GCE takes for it:
 * 6.6 or later, or the 6.1 LTS line.
 */
export function canLiveMigrateSev(s: GuestSupport | undefined): Verdict {
  const v = all(s, ['sev', 'sev-live-migration'])
  if (!v.ok || !s) return v
  const line = lineOf(parseVersion(s.version))
  if (line !== '6.1' && !atLeast(s.version, '6.6')) return {ok: false, reason: `kernel ${s.version}: GCE asks for 6.6 or later, or 6.1 LTS, for SEV live migration`}
  return v
}
