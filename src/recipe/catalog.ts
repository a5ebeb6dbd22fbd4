import {seriesNames} from '../kernel/series.js'
import {formatProblem, type RecipeStore} from './load.js'
import {VALIDATION_MODES, type Recipe, type ValidationMode} from './schema.js'

/**
 * One recipe as `cvm-image recipes --json` gives it: what a CI matrix needs to make a job of it.
 * The shape is documented in docs/ci.md ("recipes --json"); fields are only ever added.
 */
export interface RecipeRow {
  id: string
  name: string
  /** buildable-here, needs-source-access, needs-subscription, unsupported or invalid */
  status: string
  statusNote?: string
  /** the recipe builds on a runner with this project and Debian's packages: status buildable-here and no problems */
  buildable: boolean
  /** what a build of it must be given beyond the recipe: per need, one of these options (e.g. --kernel-source-file for an archive source) */
  needs: {options: string[]; why: string}[]
  kernelLine?: string
  /** "mmdebstrap <suite>" or "image <format> pinned|unpinned" */
  base?: string
  distro?: {family: string; release: string; kernel: string}
  kernel?: {line: string; upstreamVersion: string; source: string; series: string[]; localversion: string}
  validate?: {
    /** what `build <id>` validates in when no --mode is given (the recipe's validate.modes) */
    modes: ValidationMode[]
    /** every mode the recipe's kernel is configured for, and the host a validation in it needs */
    hostModes: {mode: ValidationMode; host: ValidationHostKind}[]
  }
  formats?: string[]
  /** sha256 of the resolved recipe (the same as `recipes show` and the build record give) */
  digest?: string
  problems?: string[]
}

/**
 * runner: any x86_64 machine with QEMU and OVMF (the CI runner itself; KVM when it has it, else TCG);
 * amd-sev / amd-sev-es / amd-sev-snp: an AMD host with SEV / SEV-ES / SEV-SNP enabled in kvm_amd;
 * intel-tdx: an Intel host with TDX enabled in kvm_intel; each reached with --host (docs/validation-modes.md).
 */
export type ValidationHostKind = 'runner' | 'amd-sev' | 'amd-sev-es' | 'amd-sev-snp' | 'intel-tdx'
const HOST_OF: Record<ValidationMode, ValidationHostKind> = {emulated: 'runner', sev: 'amd-sev', 'sev-es': 'amd-sev-es', snp: 'amd-sev-snp', tdx: 'intel-tdx'}
/** the kernels/features/ name a mode's guest needs (the snp mode's is sev-snp) */
const FEATURE_OF: Record<Exclude<ValidationMode, 'emulated'>, string> = {sev: 'sev', 'sev-es': 'sev-es', snp: 'sev-snp', tdx: 'tdx'}

/** The catalog of the project's concrete recipes, each judged as `build` would load it. */
export function recipeCatalog(store: RecipeStore): RecipeRow[] {
  return store.concreteIds().map((id) => {
    const r = store.tryLoad(id)
    const problems = 'problems' in r ? r.problems : []
    if (!r.recipe) return {id, name: '?', status: 'invalid', buildable: false, needs: [], problems: problems.map(formatProblem)}
    const row = describe(r.recipe)
    if ('digest' in r) row.digest = r.digest
    // a recipe that parses but asks what its distro module cannot do is not buildable anywhere, whatever its status says
    if (problems.length) Object.assign(row, {status: problems.every((p) => p.unsupported) ? 'unsupported' : 'invalid', buildable: false, problems: problems.map(formatProblem)})
    return row
  })
}

function describe(recipe: Recipe): RecipeRow {
  const {base, kernel} = recipe
  const needs: RecipeRow['needs'] = []
  if (kernel.source.kind === 'archive') needs.push({options: ['--kernel-source-file'], why: `the kernel source is the archive ${kernel.source.file}, which is not downloaded`})
  if (base.kind === 'image' && !base.sha256) needs.push({options: ['--base-sha256', '--base-file'], why: 'the base image is unpinned'})
  // a mode is open to the image when its kernel is configured for it (kernels/features/<mode>.yaml); emulated needs nothing
  const hostModes = VALIDATION_MODES.filter((m) => m === 'emulated' || kernel.config.features.includes(FEATURE_OF[m])).map((mode) => ({mode, host: HOST_OF[mode]}))
  return {
    id: recipe.id,
    name: recipe.name,
    status: recipe.status,
    statusNote: recipe.status_note,
    buildable: recipe.status === 'buildable-here',
    needs,
    kernelLine: kernel.line,
    base: base.kind === 'mmdebstrap' ? `mmdebstrap ${base.suite}` : `image ${base.format} ${base.sha256 ? 'pinned' : 'unpinned'}`,
    distro: {...recipe.distro},
    kernel: {line: kernel.line, upstreamVersion: kernel.upstream_version, source: kernel.source.kind, series: seriesNames(kernel), localversion: kernel.localversion},
    validate: {modes: [...recipe.validate.modes], hostModes},
    formats: [...recipe.image.formats],
  }
}
