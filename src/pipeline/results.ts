import type {SigningCertificate} from '../disk/secure-boot.js'
import {BugError} from '../errors.js'
import type {GuestSupport} from '../kernel/guest-support.js'
import type {PatchRecord} from '../kernel/series-apply.js'
import type {FetchedSource} from '../kernel/source-io.js'
import type {ValidationMode} from '../recipe/schema.js'
import type {CheckResult} from '../validate/check-types.js'
import type {ValidationVerdict} from '../validate/report.js'
import type {StageName} from './stage-names.js'

/** base: out/rootfs.tar */
export interface BaseResult {
  /** where the rootfs came from: "mmdebstrap <variant> <suite> <mirror>", a URL, or "file <path>" */
  source: string
  /** of rootfs.tar */
  sha256: string
  entries: number
}

/** kernel-source: out/tree */
export interface KernelSourceResult {
  kind: FetchedSource['kind']
  /** the tree's version, e.g. 6.1.192 */
  version: string
  digest: string
  /** a Debian source package: "<name> <version>" */
  package?: string
}

/** patch: out/tree, the series applied */
export interface PatchResult {
  /** a control build: only the build fixes were applied */
  control: boolean
  /** the entries applied, in order */
  applied: PatchRecord[]
  /** entries the tree already has (read from its content) */
  skipped: PatchRecord[]
  /** entries a control build left out */
  withheld: PatchRecord[]
}

/** configure: out/config */
export interface ConfigureResult {
  base: string
  features: string[]
  /** of the .config */
  digest: string
  /** the options proven present */
  verified: string[]
  /** `kernel check` of the patched tree with this .config, for RECORDED_FEATURES (absent in a result of older code) */
  support?: GuestSupport
}

/** compile: out/vmlinuz, System.map, config, modules/, and this as kernel.json */
export interface CompileResult {
  /** uname -r */
  release: string
  /** the source tree's version (kernel-source's) */
  version: string
  sourceDigest: string
  /** the patch stage's applied entries */
  patches: PatchRecord[]
  configDigest: string
  vmlinuzSha256: string
  /** configure's kernel check of the tree and .config this kernel was built from (absent in a result of older code) */
  support?: GuestSupport
}

/** assemble: out/disk.raw, uki.efi, cmdline.txt */
export interface AssembleResult {
  diskSha256: string
  ukiSha256: string
  /** the kernel command line in the UKI */
  cmdline: string
  rootPartUuid: string
  espPartUuid: string
  diskGuid: string
  rootFsUuid: string
  sizeGiB: number
  kernelRelease: string
  rootfs: {entries: number; removed: number; added: number; xattrs: number}
  /** whether the UKI is signed for UEFI Secure Boot, and by which certificate */
  secureBoot: UkiSigning
}

export type UkiSigning = {status: 'unsigned'} | {status: 'signed'; certificate: SigningCertificate}

/** One check as the validate stage keeps it. */
export type ValidateCheck = Pick<CheckResult, 'mode' | 'name' | 'verdict' | 'evidence'>

/** validate: out/report.json, junit.xml, serial.log */
export interface ValidateResult {
  verdict: ValidationVerdict
  modes: ValidationMode[]
  checks: ValidateCheck[]
  /** when the validation finished; absent when it was skipped (--no-validate) */
  when?: string
  /** where QEMU ran; absent when validation was skipped */
  hostKind?: 'local' | 'remote'
  /** which host ran which boot (with a pool of hosts, each boot's own: docs/host-pool.md) */
  boots?: {boot: string; host: string}[]
  bootToSshMs?: number | null
  totalMs?: number
  /**
   * the variable store the Secure Boot boot started from, and its sha256: a file of the stage's output
   * (the copy validation enrolled the signing certificate into) or the store given; publish predicts PCR 7 with Secure Boot on for it
   */
  secureBootVars?: {file: string; sha256: string} | {path: string; sha256: string}
}

/** What each stage's run() returns, kept as its result.json: the one type every reader of a stage's result uses. */
export interface StageResultTypes {
  base: BaseResult
  'kernel-source': KernelSourceResult
  patch: PatchResult
  configure: ConfigureResult
  compile: CompileResult
  assemble: AssembleResult
  validate: ValidateResult
}

/** The finished output of a stage: a directory in the cache plus its typed result (result.json). */
export interface StageResult<K extends StageName = StageName> {
  stage: K
  key: string
  dir: string
  /** what run() returned, kept as result.json */
  meta: StageResultTypes[K]
}

/** The results of a build so far, by stage. */
export type StageResults = {[K in StageName]?: StageResult<K>}

/**
 * The one accessor for a stage's result that a reader cannot go on without: throws, naming the reader,
 * when the stage is not among the results (the stage list or the runner is wrong: a bug).
 */
export function stageResult<K extends StageName>(results: StageResults, name: K, reader: string): StageResult<K> {
  const r = results[name] as StageResult<K> | undefined
  if (!r) throw new BugError(`${reader} needs the ${name} stage's result, and there is none`)
  return r
}
