import type {ToolRequirement} from '../doctor/requirement.js'
import type {Json} from '../util/fsx.js'
import type {FetchedSource, SourceIO} from '../kernel/source-io.js'
import type {KernelSourceSpec, Recipe, RecipeBase} from '../recipe/schema.js'
import type {Addition} from '../rootfs/transform.js'

/**
 * One distro family's knowledge behind one interface (issue #11 item 2): how its base rootfs is
 * made, which kernel sources it takes and where its own kernel config comes from, how its package
 * manager is kept from replacing the CVM kernel, which guest files it gets, and which host tools
 * that needs. Everything else (the kernel build, the disk, validation, publish) is the same for
 * every family. Adding a family is one module here plus its recipes.
 */

export type FamilyName = Recipe['distro']['family']
export type HoldMethod = Recipe['image']['kernel_hold']['method']
export type KernelHold = Recipe['image']['kernel_hold']

/** What rendering a kernel hold may read: the base rootfs's own copy of a file the hold edits. */
export interface HoldContext {
  kernelRelease: string
  /** the project's templates/ (a hold file may be a template of templates/guest/) */
  templatesDir: string
  /** the base's regular file at a canonical name (etc/dnf/dnf.conf), or undefined when it has none */
  baseFile(name: string): Promise<Buffer | undefined>
}

export interface RootfsIO {
  sourceDateEpoch: number
  /** the stage's temp dir: swept after a crash */
  tmpDir: string
  logFile?: string
  signal?: AbortSignal
  onLine?: (line: string) => void
}

export interface DistroModule {
  /** the module's name, e.g. "debian" */
  readonly name: string
  /** the recipe `distro.family` values it serves */
  readonly families: readonly FamilyName[]
  /**
   * Base kinds it builds itself (mmdebstrap for Debian); `image` bases (tarballs and disk images)
   * are read the same way for every family and need not be listed.
   */
  readonly rootfsKinds: readonly Exclude<RecipeBase['kind'], 'image'>[]
  /** kernel source kinds of its own (a Debian source package, a source RPM); tarball, archive and git are every family's */
  readonly sourceKinds: readonly KernelSourceSpec['kind'][]
  /** the source kinds that carry the distribution's own kernel config (for kernel.config.base: distro), and where */
  readonly distroConfigFrom: Partial<Record<KernelSourceSpec['kind'], string>>
  readonly holdMethods: readonly HoldMethod[]
  /** the packages a recipe usually holds, for messages */
  readonly holdExample: readonly string[]
  /** guest manifests under templates/guest/ besides the common manifest.yaml */
  readonly guestManifests: readonly string[]
  /** host tools only this family's stages run */
  readonly tools: readonly ToolRequirement[]

  /** builds the base rootfs tarball for one of rootfsKinds; returns where it came from */
  buildRootfs?(base: RecipeBase, output: string, io: RootfsIO): Promise<string>
  /** everything that determines such a rootfs (the request, and e.g. a hook's digest): the base stage's cache key */
  rootfsInputs?(base: RecipeBase, sourceDateEpoch: number): Record<string, Json>
  /** why the module cannot build from a source it otherwise takes (a git repository that is a patch queue, not a tree) */
  sourceProblem?(spec: KernelSourceSpec): string | undefined
  /** refuses, before any work, a source of one of sourceKinds that lacks what it needs (a pin, a file) */
  requireSourceInputs?(spec: KernelSourceSpec, localFile: string | undefined): void
  /** fetches and unpacks a source of one of sourceKinds */
  fetchSource?(spec: KernelSourceSpec, io: SourceIO): Promise<FetchedSource>
  /** writes the distribution's kernel config for a source of a distroConfigFrom kind to dest; returns what it was */
  distroConfig?(spec: KernelSourceSpec, io: SourceIO, dest: string): Promise<string>
  /** the guest files that keep the package manager from replacing the CVM kernel */
  kernelHold(hold: KernelHold, ctx: HoldContext): Promise<Addition[]>
}

/** A recipe field a module cannot serve: where, and what is missing. */
export interface CapabilityProblem {
  path: (string | number)[]
  message: string
}
