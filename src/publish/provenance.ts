import type {ImageArtifact} from '../formats/index.js'
import type {BuildRecord} from '../pipeline/build-record.js'
import type {PublishedPatch} from './manifest.js'

export const PROVENANCE_NAME = 'provenance.intoto.json'
/** our build type: how to read externalParameters (a recipe id and digest, the formats, the version) */
export const BUILD_TYPE = 'urn:cvm-image:buildtype:image:v1'

interface ResourceDescriptor {
  name: string
  uri?: string
  digest: Record<string, string>
  annotations?: Record<string, string>
}

/** An in-toto Statement v1 carrying SLSA provenance v1 for the published artifacts. */
export interface ProvenanceStatement {
  _type: 'https://in-toto.io/Statement/v1'
  subject: {name: string; digest: {sha256: string}}[]
  predicateType: 'https://slsa.dev/provenance/v1'
  predicate: {
    buildDefinition: {
      buildType: string
      externalParameters: Record<string, unknown>
      internalParameters: Record<string, unknown>
      resolvedDependencies: ResourceDescriptor[]
    }
    runDetails: {
      builder: {id: string; version: Record<string, string>}
      metadata: {invocationId: string; finishedOn?: string}
      byproducts: ResourceDescriptor[]
    }
  }
}

/** sha256 (64 hex) or a git commit (40 hex) as an in-toto digest set */
function digestSet(d: string | undefined): Record<string, string> | undefined {
  if (!d) return undefined
  if (/^[0-9a-f]{64}$/.test(d)) return {sha256: d}
  if (/^[0-9a-f]{40}$/.test(d)) return {gitCommit: d}
  return undefined
}

export interface ProvenanceInput {
  record: BuildRecord
  version: string
  artifacts: ImageArtifact[]
  base: {source?: string; digest?: string}
  kernelSource: {kind?: string; digest?: string; version?: string}
  patches: PublishedPatch[]
  ukiSha256?: string
  allowUnvalidated: boolean
}

export function buildProvenance(p: ProvenanceInput): ProvenanceStatement {
  const {record} = p
  const deps: ResourceDescriptor[] = [{name: `recipe:${record.recipeId}`, digest: {sha256: record.recipeDigest}}]
  const baseDigest = digestSet(p.base.digest)
  if (baseDigest) deps.push({name: 'base-rootfs', uri: p.base.source, digest: baseDigest})
  const srcDigest = digestSet(p.kernelSource.digest)
  if (srcDigest) deps.push({name: `kernel-source${p.kernelSource.version ? `:${p.kernelSource.version}` : ''}`, digest: srcDigest, annotations: p.kernelSource.kind ? {kind: p.kernelSource.kind} : undefined})
  for (const patch of p.patches) {
    const digest: Record<string, string> = {sha256: patch.sha256}
    if (patch.id && /^[0-9a-f]{40}$/.test(patch.id)) digest.gitCommit = patch.id
    deps.push({name: `patch:${patch.id ?? patch.file ?? patch.subject ?? patch.sha256}`, digest, annotations: patch.subject ? {subject: patch.subject} : undefined})
  }
  return {
    _type: 'https://in-toto.io/Statement/v1',
    subject: p.artifacts.map((a) => ({name: a.name, digest: {sha256: a.sha256}})),
    predicateType: 'https://slsa.dev/provenance/v1',
    predicate: {
      buildDefinition: {
        buildType: BUILD_TYPE,
        externalParameters: {
          recipe: {id: record.recipeId, digest: record.recipeDigest},
          formats: p.artifacts.map((a) => a.format),
          version: p.version,
          allowUnvalidated: p.allowUnvalidated,
        },
        internalParameters: {sourceDateEpoch: record.sourceDateEpoch, stageKeys: Object.fromEntries(Object.entries(record.stages).map(([k, v]) => [k, v?.key]))},
        resolvedDependencies: deps,
      },
      runDetails: {
        builder: {id: 'urn:cvm-image:builder:local', version: {'cvm-image': record.toolVersion}},
        // finishedOn is when the validated build was made (the validate stage's time, cached with it), so a
        // rebuild from the cache republishes the same statement
        metadata: {invocationId: record.stages.assemble?.key ?? '', finishedOn: record.stages.validate?.meta.when},
        byproducts: p.ukiSha256 ? [{name: 'uki.efi', digest: {sha256: p.ukiSha256}}] : [],
      },
    },
  }
}
