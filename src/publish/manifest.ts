import type {ImageArtifact} from '../formats/index.js'
import type {BuildRecord} from '../pipeline/build-record.js'
import type {StageName} from '../pipeline/stage.js'
import type {GuestOsFeature} from './guest-os-features.js'
import type {ValidationSummary} from './validation-gate.js'

export const MANIFEST_SCHEMA = 'cvm-image/manifest/v1'

export interface PatchRecord {
  /** upstream commit id, for a backported commit */
  id?: string
  /** file under kernels/, for a local patch */
  file?: string
  subject?: string
  sha256: string
}

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
    patches: PatchRecord[]
    config: {base?: string; features: string[]; digest?: string}
  }
  boot: {ukiSha256?: string; cmdline?: string; rootPartUuid?: string}
  disk: {sha256: string; sizeGiB?: number}
  validation: ValidationSummary
  gce: {guestOsFeatures: GuestOsFeature[]}
  artifacts: {name: string; format: string; size: number; sha256: string}[]
  provenance: {name: string; sha256: string}
  /** the cache key of every stage that made the image */
  build: {stages: Partial<Record<StageName, string>>}
}

type Meta = Record<string, unknown>
const metaOf = (record: BuildRecord, stage: StageName): Meta => (record.stages[stage]?.meta ?? {}) as Meta
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined)

function patchesOf(record: BuildRecord): PatchRecord[] {
  const list = (metaOf(record, 'compile').patches ?? metaOf(record, 'patch').applied ?? []) as Meta[]
  return list.map((p) => ({id: str(p.id), file: str(p.file), subject: str(p.subject), sha256: String(p.sha256 ?? '')}))
}

export interface ManifestInput {
  record: BuildRecord
  version: string
  disk: {sha256: string}
  artifacts: ImageArtifact[]
  validation: ValidationSummary
  guestOsFeatures: GuestOsFeature[]
  provenance: {name: string; sha256: string}
}

/** Built only from the build record and the artifacts, so the same build always gives the same bytes. */
export function buildManifest(m: ManifestInput): Manifest {
  const {record} = m
  const base = metaOf(record, 'base')
  const source = metaOf(record, 'kernel-source')
  const compile = metaOf(record, 'compile')
  const configure = metaOf(record, 'configure')
  const assemble = metaOf(record, 'assemble')
  const recipe = record.recipe
  return {
    schema: MANIFEST_SCHEMA,
    recipe: {id: record.recipeId, name: recipe.name, digest: record.recipeDigest},
    version: m.version,
    sourceDateEpoch: record.sourceDateEpoch,
    tool: {name: 'cvm-image', version: record.toolVersion},
    distro: recipe.distro ? {family: recipe.distro.family, release: recipe.distro.release} : undefined,
    base: {source: str(base.source), digest: str(base.sha256)},
    kernel: {
      version: str(compile.version) ?? str(source.version),
      release: str(compile.release),
      source: {kind: str(source.kind) ?? recipe.kernel?.source.kind, digest: str(compile.sourceDigest) ?? str(source.digest)},
      patches: patchesOf(record),
      config: {
        base: str(configure.base) ?? recipe.kernel?.config.base,
        features: ((configure.features as string[] | undefined) ?? recipe.kernel?.config.features ?? []).map(String),
        digest: str(compile.configDigest) ?? str(configure.digest),
      },
    },
    boot: {ukiSha256: str(assemble.ukiSha256), cmdline: str(assemble.cmdline), rootPartUuid: str(assemble.rootPartUuid)},
    disk: {sha256: m.disk.sha256, sizeGiB: typeof assemble.sizeGiB === 'number' ? assemble.sizeGiB : recipe.image?.size_gib},
    validation: m.validation,
    gce: {guestOsFeatures: m.guestOsFeatures},
    artifacts: m.artifacts.map((a) => ({name: a.name, format: a.format, size: a.size, sha256: a.sha256})),
    provenance: m.provenance,
    // No build time here: a rebuild from the cache must give the same manifest, or re-publishing it would conflict.
    build: {
      stages: Object.fromEntries(Object.entries(record.stages).map(([k, v]) => [k, v?.key])) as Partial<Record<StageName, string>>,
    },
  }
}
