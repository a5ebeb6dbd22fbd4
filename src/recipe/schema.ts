import {z} from 'zod'

import {FAMILY_BASES, FAMILY_SOURCES} from '../distro/schemas.js'
import {pinnedSha256, sha256, url} from './fields.js'

/**
 * A recipe's fields. Parsing, validation messages and `recipes show` all come from this schema.
 * What only one distro family reads (a base its module builds, a kernel source it fetches) is
 * defined in that family's folder and put together here through src/distro/schemas.ts.
 */

export const RECIPE_STATUSES = ['buildable-here', 'needs-source-access', 'needs-subscription'] as const
export const BASE_FORMATS = ['tar', 'tar.gz', 'tar.xz', 'tar.zst', 'qcow2', 'raw', 'vmdk'] as const
export const IMAGE_FORMATS = ['raw', 'qcow2', 'gce'] as const
/** emulated (QEMU, TCG or KVM), then one mode per confidential-VM kind, each needing its own host (docs/validation-modes.md) */
export const VALIDATION_MODES = ['emulated', 'sev', 'sev-es', 'snp', 'tdx'] as const
/**
 * lean: allnoconfig + the lean CVM profile (templates/kernel/lean.config.hbs), what a distro
 * userland boots on; minimal: allnoconfig + the features' fragments alone, a kernel that compiles
 * the CVM code paths but boots no userland (proving a series compiles, in less time); defconfig;
 * distro: the distribution's own config.
 */
export const CONFIG_BASES = ['lean', 'minimal', 'defconfig', 'distro'] as const

export const ImageBase = z.strictObject({
  kind: z.literal('image'),
  /** the distro's published guest image or rootfs tarball */
  url,
  sha256: pinnedSha256,
  format: z.enum(BASE_FORMATS),
  /** where the URL and checksum come from, or how to get the image where it is not public */
  notes: z.string().optional(),
})

/** a base a family's module builds (src/distro/schemas.ts), or an image any family reads */
export const Base = z.discriminatedUnion('kind', [...FAMILY_BASES, ImageBase])

export const TarballSource = z.strictObject({
  kind: z.literal('tarball'),
  url,
  sha256: pinnedSha256,
})

export const GitSource = z.strictObject({
  kind: z.literal('git'),
  url,
  /** tag, branch or commit */
  ref: z.string().min(1),
})

/**
 * A tree inside an archive that is not downloaded: the user gives the file (--kernel-source-file),
 * checked against sha256. For kernel trees that no package source serves any more, such as the
 * proving recipes' old trees; `origin` says where a user gets the same tree.
 */
export const ArchiveSource = z.strictObject({
  kind: z.literal('archive'),
  /** the archive's file name, as a user would have it (tar, tar.gz, tar.xz, tar.zst) */
  file: z.string().regex(/^[A-Za-z0-9._+-]+\.tar(\.(gz|xz|zst|bz2))?$/, 'must be a tar archive file name (.tar, .tar.gz, .tar.xz, .tar.zst)'),
  sha256,
  /** the top folder of the archive that holds the tree (archives with several trees) */
  member: z.string().regex(/^[A-Za-z0-9._+-]+$/, 'must be a top-level folder name of the archive'),
  /** where a user gets the same tree, and how it relates to the archive */
  origin: z.string().min(1),
})

/** a source a family's module fetches (src/distro/schemas.ts), or one any family reads */
export const KernelSource = z.discriminatedUnion('kind', [...FAMILY_SOURCES, TarballSource, GitSource, ArchiveSource])

export const Kernel = z.strictObject({
  /** kernels/<line>/series.yaml holds the backport series for this line */
  line: z.string().regex(/^\d+\.\d+$/, 'must be a kernel line such as 5.10'),
  /** the upstream version the distro's source is based on, e.g. 5.4.0 or 6.1 */
  upstream_version: z.string().regex(/^\d+\.\d+(\.\d+)?$/, 'must be a version such as 5.4 or 5.4.0'),
  source: KernelSource,
  /** series files under kernels/, applied in order; default [<line>/series.yaml] */
  series: z.array(z.string().min(1)).optional(),
  config: z.strictObject({
    base: z.enum(CONFIG_BASES).default('lean'),
    /** names of kernels/features/<name>.yaml */
    features: z.array(z.string().min(1)).min(1),
    /** extra options, e.g. {CONFIG_HZ_100: y} */
    options: z.record(z.string().regex(/^CONFIG_[A-Z0-9_]+$/, 'must be a Kconfig symbol such as CONFIG_NVME_CORE'), z.string()).default({}),
  }),
  localversion: z.string().regex(/^[-.+~A-Za-z0-9]*$/, 'may hold letters, digits and - . + ~ only').default('-cvm'),
  /** what SEV-ES guest support this line has, or what it needs backported */
  sev_es: z.string().min(1),
})

export const Boot = z.strictObject({
  /** the kernel command line in the UKI; root= is added by assemble */
  cmdline: z.string().default('console=tty0 console=ttyS0'),
})

export const Image = z.strictObject({
  size_gib: z.number().int().min(1).max(2048),
  formats: z.array(z.enum(IMAGE_FORMATS)).min(1).default(['raw', 'qcow2', 'gce']),
  hostname: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must be a host name').default('cvm'),
  /** globs of base paths the new kernel replaces (distro kernels, modules, initrds) */
  remove: z.array(z.string().min(1)).default([]),
  /** how the image's package manager is kept from replacing the CVM kernel */
  kernel_hold: z.strictObject({
    /** a method of the recipe's distro module (src/distro/): apt-preferences, dnf-exclude, zypper-lock, or none; the recipe check refuses one the module lacks */
    method: z.string().regex(/^[a-z][a-z0-9-]*$/, 'must be a hold method name such as apt-preferences, dnf-exclude, zypper-lock or none'),
    /** packages to pin away, e.g. linux-image-* */
    packages: z.array(z.string().min(1)).default([]),
    note: z.string().optional(),
  }),
  /** allow tar entries that point outside the root (e.g. absolute symlinks a distro ships) */
  allow_absolute_symlinks: z.boolean().default(true),
})

export const Validate = z.strictObject({
  modes: z.array(z.enum(VALIDATION_MODES)).min(1).default(['emulated']),
  memory_mib: z.number().int().min(256).default(2048),
  cpus: z.number().int().min(1).default(2),
  boot_timeout_s: z.number().int().min(10).default(600),
})

/** What a recipe that says nothing of validation gets; also what `cvm-image validate`, which reads no recipe, defaults to. */
export const VALIDATE_DEFAULTS: Readonly<z.infer<typeof Validate>> = Validate.parse({})
/** The guest's host name when a recipe names none (and in `cvm-image validate`). */
export const DEFAULT_HOSTNAME: string = Image.shape.hostname.parse(undefined)

export const Publish = z.strictObject({
  /** release version; default: <source_date_epoch>-<first 12 hex of the assemble key> (src/publish/version.ts) */
  version: z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/, 'must be letters, digits and . _ - only (it names a directory: no /)')
    .refine((v) => v !== '.' && v !== '..', 'must not be "." or ".." (it names a directory under <target>/<recipe id>/)')
    .optional(),
})

export const Recipe = z.strictObject({
  /** the file name without .yaml */
  id: z.string(),
  name: z.string().min(1),
  extends: z.string().optional(),
  /** a recipe only to be extended, never built */
  abstract: z.boolean().default(false),
  status: z.enum(RECIPE_STATUSES),
  status_note: z.string().optional(),
  /** the distro this recipe forks and the kernel it ships (from the seed's table) */
  distro: z.strictObject({
    /** picks the distro module (src/distro/); the recipe check refuses a family no module serves */
    family: z.string().regex(/^[a-z][a-z0-9-]*$/, 'must be a distro family name such as debian, ubuntu, rhel or sles'),
    release: z.string().min(1),
    kernel: z.string().min(1),
  }),
  source_date_epoch: z.number().int().min(0),
  base: Base,
  kernel: Kernel,
  // prefault: an absent section is parsed as {}, so each field's one default above applies
  boot: Boot.prefault({}),
  image: Image,
  validate: Validate.prefault({}),
  publish: Publish.default({}),
})

export type Recipe = z.infer<typeof Recipe>
export type RecipeBase = z.infer<typeof Base>
export type KernelSourceSpec = z.infer<typeof KernelSource>
export type ValidationMode = (typeof VALIDATION_MODES)[number]
export type ImageFormat = (typeof IMAGE_FORMATS)[number]
