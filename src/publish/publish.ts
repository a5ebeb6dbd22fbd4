import {existsSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {prepareFormats, type FormatShare, type ImageArtifact} from '../formats/index.js'
import {ConflictError, InputError, StageError, isCvmError} from '../errors.js'
import {measureImage} from '../measure/image.js'
import {releaseLaunchOptions} from '../measure/release-launch.js'
import {isControlBuild, type BuildRecord} from '../pipeline/build-record.js'
import type {StageName} from '../pipeline/stage-names.js'
import type {ImageFormat} from '../recipe/schema.js'
import type {ConnectOptions} from '../remote/ssh.js'
import {sha256, sha256File} from '../util/fsx.js'
import {sha256MemoDir} from '../util/extent-hash.js'
import {guestOsFeatures} from './guest-os-features.js'
import {builtGve, kernelCanBeSnpGuest, readBuiltKernelConfig, recordedGuestSupport} from './kernel-config.js'
import {buildManifest, proveMeasurements, UNSIGNED, type Manifest, type ReleaseMeasurements, type ReleaseSigning} from './manifest.js'
import {IN_TOTO_PAYLOAD_TYPE, loadAttestationSigner} from './dsse.js'
import {CHECKSUMS_SIGNATURE_NAME, gpgvVerify, inspectReleaseKey, signDetached, type ReleaseKeyOptions} from './sign.js'
import {buildValidationStatement, VALIDATION_STATEMENT_NAME} from './validation-statement.js'
import {buildProvenance, PROVENANCE_NAME} from './provenance.js'
import {openReleaseStore} from './open-store.js'
import {transportError, type ReleaseStore} from './store.js'
import {describeTarget, parseTarget, type PublishTarget} from './target.js'
import {gateOnValidation} from './validation-gate.js'
import {releaseVersion} from './version.js'

/**
 * The stages whose files publish reads; of the others it reads only the build record's results.
 * assemble: disk.raw. validate: the Secure Boot variable store it booted (checked by sha256) beside
 * its reports. compile: its .config and its modules, which decide guestOsFeatures (GVNIC needs gve.ko
 * built; VIRTIO_SCSI_MULTIQUEUE and IDPF their options). A build pulls these from a registry and leaves
 * the others there; `publish --cache-from` completes a record whose entries of these are not here
 * (docs/remote-cache.md "Pull only what is read").
 */
export const STAGES_PUBLISH_READS = ['compile', 'assemble', 'validate'] as const satisfies readonly StageName[]

export const MANIFEST_NAME = 'manifest.json'
export const CHECKSUMS_NAME = 'SHA256SUMS'

export interface PublishOptions {
  /** publish an image whose validation failed or did not run; the manifest records it */
  allowUnvalidated?: boolean
  /** formats to publish instead of recipe.image.formats */
  formats?: ImageFormat[]
  /** where converted formats are kept between runs (default: $TMPDIR/cvm-image-publish); the CLI passes <cache>/publish */
  stagingDir?: string
  /** sha256s by extent digest (src/util/extent-hash.ts), shared with assemble and validate: the build cache's; default under stagingDir */
  sha256MemoDir?: string
  /** format files made on other runners, and where this one's go (--cache-from, --cache-to: src/pipeline/format-share.ts) */
  formatShare?: FormatShare
  /** the user's OpenPGP release key: SHA256SUMS.gpg is added, and SHA256SUMS then lists manifest.json too */
  releaseKey?: ReleaseKeyOptions
  /** an Ed25519 private key (PEM) and, for an encrypted one, its passphrase file: provenance.intoto.json and validation.intoto.json become DSSE envelopes */
  attestationKey?: {keyFile: string; passphraseFile?: string}
  /** host key pin and credentials for sftp:// targets */
  ssh?: ConnectOptions
  /** bytes of one file moving to the target */
  onProgress?: (p: {file: string; done: number; total: number}) => void
  /** one line per step, for people */
  log?: (line: string) => void
  signal?: AbortSignal
}

/** present: already at the target with these bytes (hashed there); repaired: a published file of this very release had other bytes and was put back */
export type FileAction = 'uploaded' | 'resumed' | 'present' | 'repaired'

/** What `publish` did, file by file: the --json result. */
export interface PublishResult {
  recipeId: string
  version: string
  /** the target as given, normalized */
  target: string
  /** the release directory: <target>/<recipe id>/<version> */
  location: string
  files: {name: string; sha256: string; size: number; action: FileAction}[]
  /** bytes put on the wire (or copied); 0 when the release was already there */
  bytesUploaded: number
  /** true when every file was already at the target with the same bytes */
  unchanged: boolean
  manifest: Manifest
}

interface PlannedFile {
  name: string
  sha256: string
  size: number
  /** a local file (artifacts) or bytes made here (provenance, checksums, manifest) */
  path?: string
  data?: Buffer
  /** a signature: other bytes at the target are kept when they too are a good signature (a new one differs only in its time) */
  accept?: (theirs: Buffer) => Promise<boolean>
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v, null, 2) + '\n')

function fromBytes(name: string, data: Buffer): PlannedFile {
  return {name, data, sha256: sha256(data), size: data.length}
}

/** SHA256SUMS as `sha256sum -c` reads it, sorted by file name. */
export function checksumsText(files: {name: string; sha256: string}[]): string {
  return files.map((f) => `${f.sha256}  ${f.name}\n`).sort((a, b) => a.slice(66).localeCompare(b.slice(66))).join('')
}

/** A temp name per content, so a re-run resumes its own partial upload and never another build's. */
export function partialName(f: {name: string; sha256: string}): string {
  return `.${f.name}.${f.sha256.slice(0, 12)}.partial`
}

/**
 * Publishes a finished build to a target: its disk in the recipe's formats, provenance.intoto.json,
 * SHA256SUMS and manifest.json under <target>/<recipe id>/<version>/. Every file goes up under a temp
 * name, is verified by sha256 where it landed, then renamed; manifest.json comes last, so a release
 * with a manifest is complete. A re-run completes an interrupted release, an identical one uploads
 * nothing, and different bytes under an existing version are refused with a ConflictError.
 */
export async function publish(record: BuildRecord, target: string | PublishTarget, opts: PublishOptions = {}): Promise<PublishResult> {
  const log = opts.log ?? (() => undefined)
  const tgt = typeof target === 'string' ? parseTarget(target) : target
  if (isControlBuild(record)) {
    throw new ConflictError(`refusing to publish ${record.recipeId}: it is a control build (its kernel has only the series' build fixes, none of its backports)`, {
      hint: `build it without --control to publish it: cvm-image build ${record.recipeId}`,
    })
  }
  const validation = gateOnValidation(record, opts.allowUnvalidated ?? false)
  const assemble = record.stages.assemble
  const diskPath = assemble ? join(assemble.dir, 'disk.raw') : undefined
  if (!assemble || !diskPath || !existsSync(diskPath)) {
    throw new InputError(`build record of ${record.recipeId} has no assembled disk${diskPath ? ` (${diskPath} is missing)` : ''}`, {
      hint: `run \`cvm-image build ${record.recipeId}\` again: the cache entry may have been removed`,
    })
  }
  const assembleMeta = assemble.meta
  if (!assembleMeta.diskSha256) throw new StageError(`assemble result of ${record.recipeId} records no diskSha256`, {hint: 'rebuild with a current cvm-image'})
  const version = releaseVersion(record)
  // the user's keys are read (and proven usable) before any work: a bad key or passphrase fails at once
  const attest = opts.attestationKey ? await loadAttestationSigner(opts.attestationKey.keyFile, {passphraseFile: opts.attestationKey.passphraseFile}) : undefined
  const pgp = opts.releaseKey ? await inspectReleaseKey(opts.releaseKey) : undefined
  const formats = opts.formats ?? record.recipe.image.formats

  const stagingDir = opts.stagingDir ?? join(tmpdir(), 'cvm-image-publish')
  const memoDir = opts.sha256MemoDir ?? sha256MemoDir(stagingDir)
  const artifacts = await prepareFormats({path: diskPath, sha256: assembleMeta.diskSha256}, formats, {
    stagingDir,
    sha256MemoDir: memoDir,
    sourceDateEpoch: record.sourceDateEpoch,
    gceName: `${record.recipeId}-${version}`,
    signal: opts.signal,
    progress: log,
    share: opts.formatShare,
  })

  const kernelConfig = await readBuiltKernelConfig(record)
  const features = guestOsFeatures({
    config: kernelConfig?.config,
    recipeFeatures: record.recipe.kernel?.config.features ?? [],
    support: recordedGuestSupport(record),
    gve: await builtGve(record),
    validation,
  })
  log('computing the expected measurements (TPM PCRs of the UKI, SEV launch digests)')
  const measurements = await releaseMeasurements(record, diskPath)
  const draft = buildManifest({record, version, disk: {sha256: assembleMeta.diskSha256}, artifacts, validation, guestOsFeatures: features, provenance: {name: PROVENANCE_NAME, sha256: ''}, measurements})
  const statement = buildProvenance({record, version, artifacts, base: draft.base, kernelSource: {...draft.kernel.source, version: draft.kernel.version}, patches: draft.kernel.patches, ukiSha256: draft.boot.ukiSha256, allowUnvalidated: validation.allowedUnvalidated})
  // with an attestation key the statements are DSSE envelopes (Ed25519: the same build gives the same bytes)
  const provenance = fromBytes(PROVENANCE_NAME, attest ? attest.envelope(statement) : json(statement))
  const validationEnvelope = attest ? fromBytes(VALIDATION_STATEMENT_NAME, attest.envelope(buildValidationStatement(record, assembleMeta.diskSha256, validation))) : undefined
  const signing: ReleaseSigning = {
    status: pgp || attest ? 'signed' : 'unsigned',
    checksums: pgp ? {status: 'signed', file: CHECKSUMS_SIGNATURE_NAME, format: 'openpgp', fingerprint: pgp.fingerprint} : UNSIGNED.checksums,
    attestations: attest ? {status: 'signed', format: 'dsse', payloadType: IN_TOTO_PAYLOAD_TYPE, algorithm: attest.algorithm, keyid: attest.keyid, files: [PROVENANCE_NAME, VALIDATION_STATEMENT_NAME]} : UNSIGNED.attestations,
  }
  const manifest: Manifest = {
    ...draft,
    provenance: {name: PROVENANCE_NAME, sha256: provenance.sha256},
    validationStatement: validationEnvelope ? {name: VALIDATION_STATEMENT_NAME, sha256: validationEnvelope.sha256} : undefined,
    signing,
  }
  const manifestFile = fromBytes(MANIFEST_NAME, json(manifest))
  const statements = validationEnvelope ? [provenance, validationEnvelope] : [provenance]
  // a signed SHA256SUMS also lists manifest.json, so the signature covers what the manifest claims
  const checksums = fromBytes(CHECKSUMS_NAME, Buffer.from(checksumsText([...artifacts, ...statements, ...(pgp ? [manifestFile] : [])])))
  const signature: PlannedFile | undefined =
    pgp && opts.releaseKey
      ? {...fromBytes(CHECKSUMS_SIGNATURE_NAME, await signDetached(opts.releaseKey, checksums.data!)), accept: async (theirs) => (await gpgvVerify(pgp.publicKeyring, theirs, checksums.data!)).good}
      : undefined
  // order matters: manifest.json last marks the release complete
  const files: PlannedFile[] = [...artifacts.map((a: ImageArtifact) => ({name: a.name, sha256: a.sha256, size: a.size, path: a.path})), ...statements, checksums, ...(signature ? [signature] : []), manifestFile]

  const store = await openReleaseStore(tgt, [record.recipeId, version], opts.ssh ?? {}, {sha256MemoDir: memoDir})
  try {
    return await publishFiles(store, files, manifestFile, {record, version, tgt, manifest, opts, log})
  } catch (e) {
    if (isCvmError(e) || opts.signal?.aborted) throw e
    throw transportError(store.location, e)
  } finally {
    await store.close().catch(() => undefined)
  }
}

/** Puts the planned files at the release directory: the present ones are checked, the others placed; manifest.json last. */
async function publishFiles(
  store: ReleaseStore,
  files: PlannedFile[],
  manifestFile: PlannedFile,
  c: {record: BuildRecord; version: string; tgt: PublishTarget; manifest: Manifest; opts: PublishOptions; log: (line: string) => void},
): Promise<PublishResult> {
  const {record, version, tgt, manifest, opts, log} = c
  await store.prepare()
  const {present, damaged, adopted} = await findPresent(store, files, manifestFile, log)
  const results: PublishResult['files'] = []
  let bytesUploaded = 0
  for (const f of files) {
    if (present.has(f.name)) {
      results.push({name: f.name, sha256: f.sha256, size: f.size, action: 'present'})
      continue
    }
    if (adopted.has(f.name)) {
      const kept = await store.readFile(f.name)
      // a good signature of the same bytes, made at another time: the published one stays
      results.push({name: f.name, sha256: sha256(kept), size: kept.length, action: 'present'})
      continue
    }
    const {bytesSent, resumedFrom, raced} = await place(store, f, opts, {replace: damaged.has(f.name)})
    bytesUploaded += bytesSent
    const action: FileAction = damaged.has(f.name) ? 'repaired' : raced ? 'present' : resumedFrom > 0 ? 'resumed' : 'uploaded'
    log(`${action} ${f.name} (${bytesSent} bytes sent) at ${store.location}`)
    results.push({name: f.name, sha256: f.sha256, size: f.size, action})
  }
  await removeStalePartials(store, files)
  return {
    recipeId: record.recipeId,
    version,
    target: describeTarget(tgt),
    location: store.location,
    files: results,
    bytesUploaded,
    unchanged: results.every((r) => r.action === 'present'),
    manifest,
  }
}

/**
 * Which files are already at the target with the same bytes: every existing file is hashed where it
 * lies (a size match proves nothing: a flipped byte keeps the size). Where the target's manifest.json is
 * this very release's, the manifest vouches for the bytes planned here, so a file that differs was
 * damaged after it was published and is repaired. Otherwise a file that differs belongs to another
 * release under this version: a conflict, reported whole, naming each file.
 */
async function findPresent(store: ReleaseStore, files: PlannedFile[], manifestFile: PlannedFile, log: (line: string) => void): Promise<{present: Set<string>; damaged: Set<string>; adopted: Set<string>}> {
  const existing = new Set(await store.list())
  const present = new Set<string>()
  const damaged = new Set<string>()
  const adopted = new Set<string>()
  const conflicts: string[] = []
  const ourRelease = existing.has(manifestFile.name) && (await store.readFile(manifestFile.name)).equals(manifestFile.data!)
  for (const f of files) {
    if (!existing.has(f.name)) continue
    const size = await store.size(f.name)
    const theirs = size === f.size ? await digestAt(store, f, f.name) : undefined
    if (theirs === f.sha256) {
      present.add(f.name)
      continue
    }
    // SHA256SUMS.gpg: another good signature of the same SHA256SUMS by the same key is this release's own
    if (f.accept && (await f.accept(await store.readFile(f.name)))) {
      adopted.add(f.name)
      continue
    }
    const difference = theirs ? `sha256 ${theirs} at the target, ${f.sha256} here` : `${size} bytes at the target, ${f.size} bytes here`
    if (ourRelease) {
      log(`damaged ${f.name} at ${store.location} (${difference}); its manifest.json is this release's: repairing it`)
      damaged.add(f.name)
    } else conflicts.push(`${f.name}: ${difference}`)
  }
  if (conflicts.length > 0) {
    throw new ConflictError(`refusing to publish: ${store.location} already holds a different release under this version`, {
      details: conflicts.map((c) => `  ${c}`),
      hint: 'a published version is immutable: set publish.version in the recipe to a new version, publish to another target, or remove that release by hand if it was a mistake',
    })
  }
  return {present, damaged, adopted}
}

/**
 * Uploads under a temp name (resuming a partial one), verifies the sha256 at the target, then renames into
 * place without replacing anything: if another publisher put the name there meanwhile, same bytes are
 * fine and different bytes are a conflict.
 */
async function place(store: ReleaseStore, f: PlannedFile, opts: PublishOptions, how: {replace?: boolean} = {}): Promise<{bytesSent: number; resumedFrom: number; raced: boolean}> {
  const temp = partialName(f)
  let sent = {bytesSent: 0, resumedFrom: 0}
  if (f.path) {
    sent = await store.upload(f.path, temp, {signal: opts.signal, onProgress: (p) => opts.onProgress?.({file: f.name, ...p})})
  } else {
    await store.writeFile(temp, f.data!)
    sent = {bytesSent: f.size, resumedFrom: 0}
  }
  const size = await store.size(temp)
  const got = size === f.size ? await digestAt(store, f, temp) : undefined
  if (got !== f.sha256) {
    await store.remove(temp)
    throw new StageError(`${f.name} arrived at ${store.location} ${got ? `with sha256 ${got}, expected ${f.sha256}` : `with ${size} bytes, expected ${f.size}`}`, {
      hint: 'the transfer or the target corrupted it; run publish again (the partial upload was removed)',
    })
  }
  if (how.replace) {
    // a damaged file of this very release: the verified bytes replace it in one rename
    await store.replace(temp, f.name)
    return {...sent, raced: false}
  }
  if (await store.renameNoClobber(temp, f.name)) return {...sent, raced: false}
  await store.remove(temp)
  const theirs = await digestAt(store, f, f.name)
  if (theirs !== f.sha256) {
    throw new ConflictError(`refusing to publish: another publisher put a different ${f.name} at ${store.location} while this one ran`, {
      details: [`  ${f.name}: sha256 ${theirs} at the target, ${f.sha256} here`],
      hint: 'two builds were published under one version at once; set publish.version to a new version and publish again',
    })
  }
  return {...sent, raced: true}
}

/** sha256 of a file at the target: small files are read back, large ones hashed where they lie */
export async function digestAt(store: ReleaseStore, f: {data?: Buffer}, name: string): Promise<string> {
  return f.data ? sha256(await store.readFile(name)) : store.sha256(name)
}

async function removeStalePartials(store: ReleaseStore, files: PlannedFile[]): Promise<void> {
  const ours = new Set(files.map((f) => f.name))
  for (const name of await store.list()) {
    const m = /^\.(.+)\.[0-9a-f]{12}\.partial$/.exec(name)
    if (m && ours.has(m[1])) await store.remove(name)
  }
}

/**
 * The manifest's expected measurements: the disk's PCR 4, 7 and 11 (PCR 7 with Secure Boot on for
 * the variable store the validation booted, when it booted one), and the launch digests of
 * releaseLaunchOptions (SEV and SEV-ES of the firmware validation boots; SEV-SNP only for a kernel
 * that can be an SNP guest); each marked proven on the validation's vTPM or predicted only. The same list as `cvm-image measure <build>`, with the proofs.
 */
export async function releaseMeasurements(record: BuildRecord, disk: string): Promise<ReleaseMeasurements> {
  const secureBootVars = await validatedSecureBootVars(record)
  // SEV-SNP digests only for a kernel that can be an SNP guest (the recorded kernel check), as SEV_SNP_CAPABLE
  const {options, notes: launchNotes} = releaseLaunchOptions({vcpus: record.recipe.validate.cpus, snpGuest: kernelCanBeSnpGuest(record).ok})
  const {measurements, notes} = await measureImage({disk, secureBootVars, ...options})
  notes.push(...launchNotes)
  notes.push("Each entry's proof says whether a boot of this release's validation read the value from its vTPM (proven-on-vtpm, naming the checks) or it is predicted only (why).")
  return {entries: proveMeasurements(measurements, record.stages.validate?.meta.checks ?? []), notes}
}

/**
 * The variable store the validation's Secure Boot boot started from (the copy it enrolled the
 * signing certificate into, kept in its output, or the store given), its sha256 checked against the
 * one validation recorded; undefined when no Secure Boot boot had a store.
 */
export async function validatedSecureBootVars(record: BuildRecord): Promise<string | undefined> {
  const v = record.stages.validate
  const s = v?.meta.secureBootVars
  if (!v || !s) return undefined
  const path = 'file' in s ? join(v.dir, s.file) : s.path
  const got = await sha256File(path).catch(() => undefined)
  if (got !== s.sha256) {
    throw new StageError(`the variable store the validation booted under Secure Boot, ${path}, ${got ? `has sha256 ${got}` : 'cannot be read'}; the validation recorded ${s.sha256}`, {
      hint: `build ${record.recipeId} again: its validation makes the store again`,
    })
  }
  return path
}
