import {X509Certificate} from 'node:crypto'

import type {SigningCertificate} from '../disk/secure-boot.js'
import type {ImageArtifact} from '../formats/index.js'
import type {PatchRecord} from '../kernel/series-apply.js'
import type {MeasurementEntry} from '../measure/entry.js'
import type {BuildRecord} from '../pipeline/build-record.js'
import type {AssembleResult, ValidateCheck} from '../pipeline/results.js'
import type {StageName} from '../pipeline/stage.js'
import {pcrMatchedText} from '../validate/vtpm.js'
import type {GuestOsFeature} from './guest-os-features.js'
import type {ValidationSummary} from './validation-gate.js'

export const MANIFEST_SCHEMA = 'cvm-image/manifest/v1'

/** An applied patch as the manifest and the provenance name it: the patch stage's record, cut to what identifies it. */
export type PublishedPatch = Pick<PatchRecord, 'id' | 'file' | 'subject'> & {sha256: string}

/** manifest.json: everything a consumer needs to know what the image is and why to trust it. */
export interface Manifest {
  schema: typeof MANIFEST_SCHEMA
  recipe: {id: string; name: string; digest: string}
  version: string
  sourceDateEpoch: number
  tool: {name: 'cvm-image'; version: string}
  distro?: {family: string; release: string}
  base: {source?: string; digest?: string}
  kernel: {
    version?: string
    release?: string
    source: {kind?: string; digest?: string}
    patches: PublishedPatch[]
    config: {base?: string; features: string[]; digest?: string}
  }
  boot: {ukiSha256?: string; cmdline?: string; rootPartUuid?: string}
  disk: {sha256: string; sizeGiB?: number}
  validation: ValidationSummary
  gce: {guestOsFeatures: GuestOsFeature[]}
  artifacts: {name: string; format: string; size: number; sha256: string}[]
  provenance: {name: string; sha256: string}
  /** the validation statement (validation.intoto.json, a DSSE envelope): only in a release with an attestation key */
  validationStatement?: {name: string; sha256: string}
  /** what vouches for the release beyond the sums: "unsigned", or SHA256SUMS.gpg and the DSSE envelopes' keys */
  signing: ReleaseSigning
  /** the UKI's UEFI Secure Boot signature: "unsigned", or the certificate a firmware's db must hold (docs/secure-boot.md) */
  secureBoot: SecureBootManifest
  /**
   * what a verifier should expect from a VM booted from the disk (docs/measurements.md): TPM PCR 11
   * and PCR 4 of its UKI, and the SEV/SEV-ES launch digests of the firmware validation boots; each
   * entry says what it depends on. The notes say how to read them.
   */
  measurements: ReleaseMeasurements
  /** the cache key of every stage that made the image */
  build: {stages: Partial<Record<StageName, string>>}
}

export interface ReleaseMeasurements {
  entries: ReleaseMeasurementEntry[]
  notes: string[]
}

/** An expected measurement as a release gives it: the entry, and whether this release's validation proved it. */
export type ReleaseMeasurementEntry = MeasurementEntry & {proof: MeasurementProof}

/**
 * proven-on-vtpm: a boot of this release's validation read the value from its vTPM (the checks that
 * did, and for PCR 11 the phase it matched); predicted-only: computed, and not seen by any boot (why).
 */
export type MeasurementProof = {status: 'proven-on-vtpm'; checks: string[]; phase?: string} | {status: 'predicted-only'; why: string}

/**
 * Marks each entry with its proof: a TPM PCR entry is proven when a tpm-pcrs check of the validation
 * read that very value from its vTPM ("PCR n <value> = predicted (…)" in its evidence); anything else is predicted only.
 */
export function proveMeasurements(entries: readonly MeasurementEntry[], checks: readonly ValidateCheck[]): ReleaseMeasurementEntry[] {
  const read = checks.filter((c) => /(^|:)tpm-pcrs$/.test(c.name) && c.verdict !== 'skip')
  return entries.map((e) => {
    if (!e.kind.startsWith('tpm-pcr')) return {...e, proof: {status: 'predicted-only', why: 'validation does not attest SEV launches: the digest is computed, not read from a guest'}}
    const pcr = Number(e.kind.slice('tpm-pcr'.length))
    const text = pcrMatchedText(pcr, e.value)
    const by = read.flatMap((c) => {
      const at = c.evidence.indexOf(text)
      const said = at < 0 ? undefined : (/^ \(([^)]*)\)/.exec(c.evidence.slice(at + text.length))?.[1] ?? '')
      // PCR 4 can be the same with Secure Boot on and off (a kernel the stub starts unmeasured): the state read must be the entry's
      if (said === undefined || (e.params.secureBoot !== undefined && said !== `Secure Boot ${e.params.secureBoot}`)) return []
      return [{check: `${c.mode}/${c.name}`, said}]
    })
    if (by.length === 0) {
      const skipped = checks.filter((c) => /(^|:)tpm-pcrs$/.test(c.name) && c.verdict === 'skip')
      const ran = read.length ? `${read.map((c) => `${c.mode}/${c.name}`).join(', ')} read other values` : 'no tpm-pcrs check ran'
      const why = `${read.length ? 'no validation boot read this value from its vTPM' : 'no validation boot read a vTPM'}: ${[...skipped.map((c) => `${c.mode}/${c.name} skipped (${c.evidence})`), ...(read.length || !skipped.length ? [ran] : [])].join('; ')}`
      return {...e, proof: {status: 'predicted-only', why}}
    }
    const phase = by.map((b) => /^phase (.+)$/.exec(b.said)?.[1]).find((p) => p !== undefined)
    return {...e, proof: {status: 'proven-on-vtpm', checks: by.map((b) => b.check), ...(phase ? {phase} : {})}}
  })
}

/** How a release is signed (README "Publishing"): each part is "unsigned" without its key. */
export interface ReleaseSigning {
  status: 'signed' | 'unsigned'
  /** SHA256SUMS.gpg: a detached OpenPGP signature of SHA256SUMS, which then also lists manifest.json */
  checksums: {status: 'unsigned'} | {status: 'signed'; file: string; format: 'openpgp'; fingerprint: string}
  /** provenance.intoto.json and validation.intoto.json as DSSE envelopes; keyid: sha256 of the public key's DER SubjectPublicKeyInfo */
  attestations: {status: 'unsigned'} | {status: 'signed'; format: 'dsse'; payloadType: string; algorithm: string; keyid: string; files: string[]}
}

export type SecureBootManifest =
  | {status: 'unsigned'}
  | {
      status: 'signed'
      certificate: SigningCertificate
      /** images.insert's shieldedInstanceInitialState with this certificate as the db (gcloud: --signature-database-file, DER) */
      gce: {shieldedInstanceInitialState: {dbs: {content: string; fileType: 'X509'}[]}}
    }

function secureBootOf(assemble: AssembleResult | undefined): SecureBootManifest {
  const s = assemble?.secureBoot
  if (!s || s.status === 'unsigned') return {status: 'unsigned'}
  const der = new X509Certificate(s.certificate.pem).raw
  return {status: 'signed', certificate: s.certificate, gce: {shieldedInstanceInitialState: {dbs: [{content: der.toString('base64'), fileType: 'X509'}]}}}
}

export const UNSIGNED: ReleaseSigning = {status: 'unsigned', checksums: {status: 'unsigned'}, attestations: {status: 'unsigned'}}

function patchesOf(record: BuildRecord): PublishedPatch[] {
  const list = record.stages.compile?.meta.patches ?? record.stages.patch?.meta.applied ?? []
  return list.map((p) => ({id: p.id, file: p.file, subject: p.subject, sha256: p.sha256 ?? ''}))
}

export interface ManifestInput {
  record: BuildRecord
  version: string
  disk: {sha256: string}
  artifacts: ImageArtifact[]
  validation: ValidationSummary
  guestOsFeatures: GuestOsFeature[]
  provenance: {name: string; sha256: string}
  validationStatement?: {name: string; sha256: string}
  signing?: ReleaseSigning
  measurements: ReleaseMeasurements
}

/** Built only from the build record and the artifacts, so the same build always gives the same bytes. */
export function buildManifest(m: ManifestInput): Manifest {
  const {record} = m
  // a record may lack a stage (a build stopped early): each field then falls back to the recipe or is left out
  const base = record.stages.base?.meta
  const source = record.stages['kernel-source']?.meta
  const compile = record.stages.compile?.meta
  const configure = record.stages.configure?.meta
  const assemble = record.stages.assemble?.meta
  const recipe = record.recipe
  return {
    schema: MANIFEST_SCHEMA,
    recipe: {id: record.recipeId, name: recipe.name, digest: record.recipeDigest},
    version: m.version,
    sourceDateEpoch: record.sourceDateEpoch,
    tool: {name: 'cvm-image', version: record.toolVersion},
    distro: recipe.distro ? {family: recipe.distro.family, release: recipe.distro.release} : undefined,
    base: {source: base?.source, digest: base?.sha256},
    kernel: {
      version: compile?.version ?? source?.version,
      release: compile?.release,
      source: {kind: source?.kind ?? recipe.kernel?.source.kind, digest: compile?.sourceDigest ?? source?.digest},
      patches: patchesOf(record),
      config: {
        base: configure?.base ?? recipe.kernel?.config.base,
        features: [...(configure?.features ?? recipe.kernel?.config.features ?? [])],
        digest: compile?.configDigest ?? configure?.digest,
      },
    },
    boot: {ukiSha256: assemble?.ukiSha256, cmdline: assemble?.cmdline, rootPartUuid: assemble?.rootPartUuid},
    disk: {sha256: m.disk.sha256, sizeGiB: assemble?.sizeGiB ?? recipe.image?.size_gib},
    validation: m.validation,
    gce: {guestOsFeatures: m.guestOsFeatures},
    artifacts: m.artifacts.map((a) => ({name: a.name, format: a.format, size: a.size, sha256: a.sha256})),
    provenance: m.provenance,
    validationStatement: m.validationStatement,
    signing: m.signing ?? UNSIGNED,
    secureBoot: secureBootOf(assemble),
    measurements: m.measurements,
    // No build time here: a rebuild from the cache must give the same manifest, or re-publishing it would conflict.
    build: {
      stages: Object.fromEntries(Object.entries(record.stages).map(([k, v]) => [k, v?.key])) as Partial<Record<StageName, string>>,
    },
  }
}
