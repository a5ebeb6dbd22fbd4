import type {KeyObject} from 'node:crypto'
import {existsSync} from 'node:fs'
import {mkdir, readFile, rename, rm, stat} from 'node:fs/promises'
import {join} from 'node:path'

import {placeOnce} from '../formats/staging.js'
import {OCI_MANIFEST, RegistryError, digestOf, type OciClient, type OciManifest} from '../remote/oci/client.js'
import {run} from '../util/exec.js'
import {sha256File, tempSibling} from '../util/fsx.js'
import type {StageCache} from './cache.js'
import {verifyEntryEnvelope, type CacheSigner, type EntryKind} from './cache-signature.js'
import type {StageName, StageResult} from './stage.js'

export const STAGE_ARTIFACT = 'application/vnd.cvm-image.stage.v1+json'
/** the config blob: the entry's result.json, readable without the layer */
export const STAGE_RESULT = 'application/vnd.cvm-image.stage.result.v1+json'
/** the one layer: the whole entry directory as a gzip'd tar (hardlinks, modes and symlinks kept by tar itself) */
export const STAGE_LAYER = 'application/vnd.cvm-image.stage.entry.v1.tar+gzip'
export const SIGNATURE_ARTIFACT = 'application/vnd.cvm-image.stage.signature.v1+json'
/** one of publish's format files (qcow2, the GCE tarball) made from an assembled disk: the file itself is the one layer */
export const FORMAT_ARTIFACT = 'application/vnd.cvm-image.format.v1+json'
/** its config blob: which format, of which disk, and the file's sha256 and size */
export const FORMAT_INFO = 'application/vnd.cvm-image.format.info.v1+json'
export const FORMAT_LAYER = 'application/vnd.cvm-image.format.file.v1'
const DSSE_ENVELOPE = 'application/vnd.dsse.envelope.v1+json'
const EMPTY_CONFIG = 'application/vnd.oci.empty.v1+json'
const EMPTY = Buffer.from('{}')
const MAX_RESULT_BYTES = 16 << 20
const MAX_ENVELOPE_BYTES = 64 << 10

/** The tag of a stage output; its signature sits at `<tag>.sig`, written last, and is what a reader looks up first. */
export function entryTag(stage: EntryKind, key: string): string {
  return `${stage}-${key}`
}

/**
 * The stage cache in an OCI registry. A pushed entry is an artifact manifest (config = result.json,
 * one layer = the entry directory), then a signature artifact whose DSSE claim names the stage, the
 * key and the manifest digest. A reader trusts the tag of nothing: it verifies the signature, then
 * fetches the manifest by the digest the signature names, so two runners pushing one key at once each
 * leave a consistent pair and a half-finished push is invisible.
 */
export class RemoteStageCache {
  constructor(
    readonly client: OciClient,
    private readonly opts: {signer?: CacheSigner; trusted: KeyObject[]},
  ) {}

  /**
   * Pushes a finished local entry unless the registry has one signed by a key we trust (our own
   * included). Blobs first, the manifest, the signature last. Returns whether it pushed.
   */
  async push(cache: StageCache, stage: StageName, key: string): Promise<'pushed' | 'present'> {
    const signer = this.opts.signer
    if (!signer) throw new Error('pushing a stage entry needs a signing key (--cache-key)')
    if (await this.presentForPush(signer, stage, key)) return 'present'
    const dir = cache.entryDir(stage, key)
    const result = await readFile(join(dir, 'result.json'))
    const temp = await cache.makeTemp(stage, key)
    try {
      const layerFile = join(temp, 'entry.tar.gz')
      await packEntry(stage, dir, layerFile)
      await this.pushArtifact(signer, stage, key, STAGE_ARTIFACT, {mediaType: STAGE_RESULT, data: result}, {mediaType: STAGE_LAYER, path: layerFile, sha256: await sha256File(layerFile)})
      return 'pushed'
    } finally {
      await rm(temp, {recursive: true, force: true})
    }
  }

  /** Whether the registry already holds the entry signed by a trusted key; a registry found down throws (a transport error: the push is not tried). */
  private async presentForPush(signer: CacheSigner, kind: EntryKind, key: string): Promise<boolean> {
    const claim = await this.verifiedClaim(kind, key, [signer.publicKey, ...this.opts.trusted])
    if (claim.ok) return true
    if (claim.down) {
      const e = new RegistryError(claim.reason, {hint: 'the registry did not answer; the next build pushes what it lacks'})
      e.transport = true
      throw e
    }
    return false
  }

  /**
   * One entry: its config and its one layer (a file) as blobs, the manifest under the entry's tag,
   * then its signature at `<tag>.sig`, written last, so that an entry is visible only whole. The
   * registry checks each upload against its digest: a file changed since it was hashed is refused.
   */
  private async pushArtifact(signer: CacheSigner, kind: EntryKind, key: string, artifactType: string, config: {mediaType: string; data: Buffer}, layerFile: {mediaType: string; path: string; sha256: string}): Promise<void> {
    const layer = {mediaType: layerFile.mediaType, digest: `sha256:${layerFile.sha256}`, size: (await stat(layerFile.path)).size}
    await this.client.pushBlob(digestOf(config.data), config.data)
    await this.client.pushBlob(layer.digest, {file: layerFile.path, size: layer.size})
    const tag = entryTag(kind, key)
    const manifest: OciManifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType,
      config: {mediaType: config.mediaType, digest: digestOf(config.data), size: config.data.length},
      layers: [layer],
      annotations: {'dev.cvm-image.stage': kind, 'dev.cvm-image.key': key},
    }
    const manifestDigest = await this.client.putManifest(tag, Buffer.from(JSON.stringify(manifest)))
    const envelope = signer.envelope({stage: kind, key, manifest: manifestDigest})
    await this.client.pushBlob(EMPTY_DIGEST, EMPTY)
    await this.client.pushBlob(digestOf(envelope), envelope)
    const sig: OciManifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: SIGNATURE_ARTIFACT,
      config: {mediaType: EMPTY_CONFIG, digest: EMPTY_DIGEST, size: EMPTY.length},
      layers: [{mediaType: DSSE_ENVELOPE, digest: digestOf(envelope), size: envelope.length}],
      annotations: {'dev.cvm-image.signed-manifest': manifestDigest},
    }
    await this.client.putManifest(`${tag}.sig`, Buffer.from(JSON.stringify(sig)))
  }

  /**
   * Pushes one of publish's format files (its sha256 known: the staged file's) unless the registry
   * has it signed by a key we trust. The layer is the file as it is (a qcow2, a .tar.gz): no tar, no
   * second compression. docs/remote-cache.md "Publish's formats".
   */
  async pushFormat(kind: `format-${string}`, key: string, file: {path: string; sha256: string}, info: Record<string, string | number>): Promise<'pushed' | 'present'> {
    const signer = this.opts.signer
    if (!signer) throw new Error('pushing a format file needs a signing key (--cache-key)')
    if (await this.presentForPush(signer, kind, key)) return 'present'
    const config = Buffer.from(JSON.stringify({...info, sha256: file.sha256, size: (await stat(file.path)).size}))
    await this.pushArtifact(signer, kind, key, FORMAT_ARTIFACT, {mediaType: FORMAT_INFO, data: config}, {mediaType: FORMAT_LAYER, ...file})
    return 'pushed'
  }

  /**
   * Pulls the format file of (kind, key) to `dest`: the signature checked, the manifest fetched by the
   * digest it names, the file streamed to a temp name beside dest, hashed, and placed (fsynced, never
   * over a file already there: placeOnce) only when its bytes are the signed digest. Anything short of
   * that leaves nothing and returns why.
   */
  async pullFormat(kind: `format-${string}`, key: string, dest: string): Promise<{sha256: string; placed: boolean} | {reason: string; absent?: true; down?: true}> {
    const signed = await this.signedManifest(kind, key, FORMAT_SHAPE)
    if ('reason' in signed) return signed
    const layer = signed.manifest.layers[0]
    const temp = tempSibling(dest)
    try {
      await this.client.fetchBlob(layer.digest, layer.size, temp)
      const placed = await placeOnce(temp, dest)
      return {sha256: layer.digest.slice('sha256:'.length), placed}
    } catch (e) {
      await rm(temp, {force: true})
      return failure(e)
    }
  }

  /** Whether the registry holds an entry for (stage, key) a trusted key signed, and if not, why (for `plan`). */
  async probe(stage: StageName, key: string): Promise<{ok: true} | {ok: false; reason: string; absent?: true}> {
    const v = await this.verifiedClaim(stage, key, this.opts.trusted)
    return v.ok ? {ok: true} : v
  }

  /**
   * The result (result.json) of the entry for (stage, key), read from the signed manifest's config
   * blob, digest checked, without its layer: what a build records of a stage whose files nothing here
   * reads (docs/remote-cache.md "Pull only what is read"). Writes nothing.
   */
  async peek(stage: StageName, key: string): Promise<{meta: StageResult['meta']} | {reason: string; absent?: true; down?: true}> {
    const signed = await this.signedEntry(stage, key)
    if ('reason' in signed) return signed
    try {
      return {meta: JSON.parse(signed.result.toString('utf8')) as StageResult['meta']}
    } catch {
      return {reason: `${this.client.repo.display} ${entryTag(stage, key)}: its signed result.json is not JSON`}
    }
  }

  /** The signed manifest of (stage, key), checked to be a stage entry, and its config blob (result.json), digest checked. */
  private async signedEntry(stage: StageName, key: string): Promise<{manifest: OciManifest; result: Buffer} | {reason: string; absent?: true; down?: true}> {
    const signed = await this.signedManifest(stage, key, STAGE_SHAPE)
    if ('reason' in signed) return signed
    try {
      return {manifest: signed.manifest, result: await this.client.readBlob(signed.manifest.config.digest, MAX_RESULT_BYTES)}
    } catch (e) {
      return failure(e)
    }
  }

  /** The manifest a trusted signature names for (kind, key), fetched by that digest and checked to have the shape of its kind: one config, one layer. */
  private async signedManifest(kind: EntryKind, key: string, shape: EntryShape): Promise<{manifest: OciManifest} | {reason: string; absent?: true; down?: true}> {
    const claim = await this.verifiedClaim(kind, key, this.opts.trusted)
    if (!claim.ok) return {reason: claim.reason, ...(claim.absent ? {absent: true} : {}), ...(claim.down ? {down: true} : {})}
    const where = `${this.client.repo.display} ${entryTag(kind, key)}`
    try {
      const got = await this.client.getManifest(claim.manifest)
      if (!got) return {reason: `${where}: the manifest its signature names (${claim.manifest}) is gone`}
      const m = got.manifest
      if (m.artifactType !== shape.artifactType || m.config.mediaType !== shape.config || m.layers.length !== 1 || m.layers[0].mediaType !== shape.layer) {
        return {reason: `${where}: the signed manifest is not a ${shape.what} (artifactType ${JSON.stringify(m.artifactType)})`}
      }
      return {manifest: m}
    } catch (e) {
      return failure(e)
    }
  }

  /**
   * Pulls the entry for (stage, key) into a temp directory, checks its signature, every digest and
   * that the layer's result.json is the signed config, then renames it into the cache as a locally
   * built entry appears. Anything short of that leaves nothing and returns why.
   */
  async pull(cache: StageCache, stage: StageName, key: string): Promise<{result: StageResult} | {reason: string; absent?: true; down?: true}> {
    const signed = await this.signedEntry(stage, key)
    if ('reason' in signed) return signed
    const {manifest: m, result} = signed
    const where = `${this.client.repo.display} ${entryTag(stage, key)}`
    let temp: string | undefined
    try {
      temp = await cache.makeTemp(stage, key)
      const layerFile = join(temp, 'entry.tar.gz')
      await this.client.fetchBlob(m.layers[0].digest, m.layers[0].size, layerFile)
      const out = join(temp, 'out')
      await mkdir(out, {mode: 0o700})
      await run('tar', ['--extract', '--gzip', '--file', layerFile, '--directory', out, '--numeric-owner'], {what: `unpack the ${stage} cache entry from the registry`})
      await rm(layerFile)
      const unpacked = await readFile(join(out, 'result.json')).catch(() => undefined)
      if (!unpacked?.equals(result)) return {reason: `${where}: the layer's result.json is not the signed config: refused`}
      const dir = cache.entryDir(stage, key)
      await mkdir(join(cache.root, 'stages', stage), {recursive: true})
      // another build may have made the entry meanwhile: it stands, ours is dropped
      if (!existsSync(dir)) await rename(out, dir)
      const entry = await cache.lookup(stage, key)
      if (!entry) return {reason: `${where}: the unpacked entry has no readable result.json`}
      return {result: entry}
    } catch (e) {
      return {reason: `${(e as Error).message}`}
    } finally {
      if (temp) await rm(temp, {recursive: true, force: true})
    }
  }

  /** The signature at `<tag>.sig`, verified against the keys given and bound to this stage and key. */
  private async verifiedClaim(stage: EntryKind, key: string, trusted: KeyObject[]): Promise<{ok: true; manifest: string} | {ok: false; reason: string; absent?: true; down?: true}> {
    const tag = entryTag(stage, key)
    const where = `${this.client.repo.display} ${tag}`
    try {
      const sig = await this.client.getManifest(`${tag}.sig`)
      if (!sig) return {ok: false, reason: `not in ${this.client.repo.display}`, absent: true}
      const layer = sig.manifest.layers[0]
      if (sig.manifest.artifactType !== SIGNATURE_ARTIFACT || sig.manifest.layers.length !== 1 || layer.mediaType !== DSSE_ENVELOPE) {
        return {ok: false, reason: `${where}.sig is not a cvm-image signature (artifactType ${JSON.stringify(sig.manifest.artifactType)})`}
      }
      if (layer.size > MAX_ENVELOPE_BYTES) return {ok: false, reason: `${where}.sig: its envelope is ${layer.size} bytes, more than a signature needs`}
      const v = verifyEntryEnvelope(await this.client.readBlob(layer.digest, MAX_ENVELOPE_BYTES), trusted)
      if (!v.ok) return {ok: false, reason: `${where}: ${v.reason}`}
      if (v.claim.stage !== stage || v.claim.key !== key) return {ok: false, reason: `${where}: its signature vouches for ${v.claim.stage}-${v.claim.key}, not this entry`}
      if (!/^sha256:[a-f0-9]{64}$/.test(v.claim.manifest)) return {ok: false, reason: `${where}: its signature names no manifest digest`}
      return {ok: true, manifest: v.claim.manifest}
    } catch (e) {
      // unreachable or silent (down): the runner stops asking it for the rest of the build
      return {ok: false, ...failure(e)}
    }
  }
}

const EMPTY_DIGEST = digestOf(EMPTY)

/** What a manifest of each kind of entry holds: its artifactType, its config's and its one layer's media types. */
interface EntryShape {
  artifactType: string
  config: string
  layer: string
  what: string
}
const STAGE_SHAPE: EntryShape = {artifactType: STAGE_ARTIFACT, config: STAGE_RESULT, layer: STAGE_LAYER, what: 'cvm-image stage entry'}
const FORMAT_SHAPE: EntryShape = {artifactType: FORMAT_ARTIFACT, config: FORMAT_INFO, layer: FORMAT_LAYER, what: 'cvm-image format file'}

/** A registry's failure as a reason: down (not reached, no answer in time) when it was the transport's. */
function failure(e: unknown): {reason: string; down?: true} {
  if (e instanceof RegistryError && e.transport) return {reason: e.message, down: true}
  return {reason: (e as Error).message}
}

/**
 * The layer of a finished entry: tar+gzip, --sort=name (the same entry gives the same member order on
 * every runner), --sparse (a disk.raw is mostly holes; they are recorded, not read and gzipped as
 * zeros, and come back as holes).
 *
 * A finished entry's bytes never change, but its files' inodes do: a later stage copies the entry's
 * tree with hard links (patch takes kernel-source's, compile patch's: src/kernel/tree.ts) while this
 * push reads it, and a new link changes the file's ctime. GNU tar reads that as "file changed as we
 * read it" and exits 1 (the bench team-cache lost kernel-source and patch that way). That one
 * warning is turned off; any other diagnostic, or an exit above 1, still refuses the pack.
 */
async function packEntry(stage: StageName, dir: string, layerFile: string): Promise<void> {
  const what = `pack the ${stage} cache entry for the registry`
  const r = await run('tar', ['--create', '--gzip', '--sparse', '--warning=no-file-changed', '--file', layerFile, '--directory', dir, '--sort=name', '--numeric-owner', '.'], {what, reject: false})
  if (r.exitCode === 0 || (r.exitCode === 1 && r.stderr.trim() === '')) return
  throw new Error(`${what}: tar exited with ${r.exitCode}: ${r.stderr.trim().slice(-2000)}`)
}
