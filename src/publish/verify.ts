import {ConflictError, isCvmError} from '../errors.js'
import {sha256} from '../util/fsx.js'
import type {ConnectOptions} from '../remote/ssh.js'
import type {Manifest} from './manifest.js'
import {CHECKSUMS_NAME, MANIFEST_NAME, checksumsText, digestAt} from './publish.js'
import {openReleaseStore} from './open-store.js'
import {transportError, type ReleaseStore} from './store.js'
import {parseTarget, type PublishTarget} from './target.js'

export type FileVerdict = 'ok' | 'differs' | 'missing'

/** What `verify` found, file by file: the --json result. */
export interface VerifyResult {
  /** the release directory checked */
  location: string
  recipeId: string
  version: string
  /** every file the manifest names (and SHA256SUMS) is there with the manifest's sha256 */
  intact: boolean
  files: {name: string; expected: string; sha256: string | null; size: number | null; verdict: FileVerdict}[]
}

/**
 * Checks a published release where it lies (<target>/<recipe id>/<version>, a directory or an SFTP
 * URL): each artifact and the provenance against the sha256 its manifest.json records, and
 * SHA256SUMS against the manifest. Returns the result when intact; throws a ConflictError (exit 4)
 * naming every file that differs or is missing.
 */
export async function verifyRelease(release: string | PublishTarget, opts: {ssh?: ConnectOptions; log?: (line: string) => void; signal?: AbortSignal} = {}): Promise<VerifyResult> {
  const tgt = typeof release === 'string' ? parseTarget(release) : release
  const store = await openReleaseStore(tgt, [], opts.ssh ?? {})
  try {
    return await check(store, opts.log ?? (() => undefined), opts.signal)
  } catch (e) {
    if (isCvmError(e)) throw e
    throw transportError(store.location, e)
  } finally {
    await store.close().catch(() => undefined)
  }
}

async function check(store: ReleaseStore, log: (line: string) => void, signal?: AbortSignal): Promise<VerifyResult> {
  const names = new Set(await store.list())
  if (!names.has(MANIFEST_NAME)) {
    throw new ConflictError(`${store.location} is not a complete release: it has no ${MANIFEST_NAME}`, {
      details: names.size ? [`  files there: ${[...names].sort().join(', ')}`] : ['  the directory is empty or does not exist'],
      hint: 'give the release directory <target>/<recipe id>/<version>; a publish that was interrupted is completed by running it again',
    })
  }
  let manifest: Manifest
  try {
    manifest = JSON.parse((await store.readFile(MANIFEST_NAME)).toString('utf8')) as Manifest
    if (!Array.isArray(manifest.artifacts) || !manifest.provenance?.sha256) throw new Error('it names no artifacts or provenance')
  } catch (e) {
    throw new ConflictError(`${store.location}/${MANIFEST_NAME} is not a cvm-image manifest (${(e as Error).message})`, {hint: 'the release was damaged or is not one cvm-image published'})
  }
  const expected = [...manifest.artifacts.map((a) => ({name: a.name, sha256: a.sha256})), {name: manifest.provenance.name, sha256: manifest.provenance.sha256}]
  const files: VerifyResult['files'] = []
  for (const f of expected) {
    if (!names.has(f.name)) {
      files.push({name: f.name, expected: f.sha256, sha256: null, size: null, verdict: 'missing'})
      continue
    }
    signal?.throwIfAborted()
    log(`hashing ${f.name} at ${store.location}`)
    const got = await digestAt(store, {}, f.name)
    files.push({name: f.name, expected: f.sha256, sha256: got, size: (await store.size(f.name)) ?? null, verdict: got === f.sha256 ? 'ok' : 'differs'})
  }
  // SHA256SUMS must say what the manifest says, line for line
  const sumsExpected = sha256(checksumsText(expected))
  if (!names.has(CHECKSUMS_NAME)) files.push({name: CHECKSUMS_NAME, expected: sumsExpected, sha256: null, size: null, verdict: 'missing'})
  else {
    const data = await store.readFile(CHECKSUMS_NAME)
    const got = sha256(data)
    files.push({name: CHECKSUMS_NAME, expected: sumsExpected, sha256: got, size: data.length, verdict: got === sumsExpected ? 'ok' : 'differs'})
  }

  const result: VerifyResult = {location: store.location, recipeId: manifest.recipe?.id, version: manifest.version, intact: files.every((f) => f.verdict === 'ok'), files}
  const bad = files.filter((f) => f.verdict !== 'ok')
  if (bad.length > 0) {
    throw new ConflictError(`${store.location} does not verify: ${bad.map((f) => f.name).join(', ')} ${bad.length === 1 ? 'differs from' : 'differ from'} its manifest.json`, {
      details: bad.map((f) => (f.verdict === 'missing' ? `  ${f.name}: missing (the manifest says sha256 ${f.expected})` : `  ${f.name}: sha256 ${f.sha256} at the target, the manifest says ${f.expected}`)),
      hint: `re-publish the same build to repair it (publish puts back a damaged file of its own release), or withdraw the release; do not use ${bad.map((f) => f.name).join(', ')}`,
    })
  }
  return result
}
