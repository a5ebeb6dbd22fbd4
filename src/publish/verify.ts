import {createPublicKey, type KeyObject} from 'node:crypto'
import {readFile} from 'node:fs/promises'

import {ConflictError, InputError, isCvmError} from '../errors.js'
import {sha256} from '../util/fsx.js'
import type {ConnectOptions} from '../remote/ssh.js'
import {verifyEnvelope} from './dsse.js'
import type {Manifest} from './manifest.js'
import {PROVENANCE_NAME} from './provenance.js'
import {CHECKSUMS_SIGNATURE_NAME, gpgvVerify, publicKeyKind} from './sign.js'
import {VALIDATION_STATEMENT_NAME} from './validation-statement.js'
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
  /** with --key: each signed file and its verdict (SHA256SUMS.gpg with an OpenPGP key, the DSSE envelopes with a PEM key) */
  signatures: {name: string; kind: 'openpgp' | 'dsse'; verdict: 'ok' | 'bad' | 'missing'; detail: string}[]
}

/** The public keys verify checks signatures with, read from where the user points. */
interface VerifyKeys {
  openpgp: {file: string; data: Buffer}[]
  pem: {file: string; key: KeyObject}[]
}

async function readKeys(files: string[]): Promise<VerifyKeys> {
  const keys: VerifyKeys = {openpgp: [], pem: []}
  for (const file of files) {
    const data = await readFile(file).catch((e) => {
      throw new InputError(`--key ${file}: ${(e as Error).message}`)
    })
    if (publicKeyKind(data, file) === 'openpgp') keys.openpgp.push({file, data})
    else {
      try {
        keys.pem.push({file, key: createPublicKey(data)})
      } catch (e) {
        throw new InputError(`--key ${file} is not a PEM public key gpg or node can read (${(e as Error).message})`)
      }
    }
  }
  return keys
}

/**
 * Checks a published release where it lies (<target>/<recipe id>/<version>, a directory or an SFTP
 * URL): each artifact and the provenance against the sha256 its manifest.json records, and
 * SHA256SUMS against the manifest. Returns the result when intact; throws a ConflictError (exit 4)
 * naming every file that differs or is missing.
 */
export async function verifyRelease(
  release: string | PublishTarget,
  opts: {ssh?: ConnectOptions; log?: (line: string) => void; signal?: AbortSignal; keys?: string[]} = {},
): Promise<VerifyResult> {
  const tgt = typeof release === 'string' ? parseTarget(release) : release
  const keys = await readKeys(opts.keys ?? [])
  const store = await openReleaseStore(tgt, [], opts.ssh ?? {})
  try {
    return await check(store, opts.log ?? (() => undefined), opts.signal, keys)
  } catch (e) {
    if (isCvmError(e)) throw e
    throw transportError(store.location, e)
  } finally {
    await store.close().catch(() => undefined)
  }
}

async function check(store: ReleaseStore, log: (line: string) => void, signal: AbortSignal | undefined, keys: VerifyKeys): Promise<VerifyResult> {
  const names = new Set(await store.list())
  if (!names.has(MANIFEST_NAME)) {
    throw new ConflictError(`${store.location} is not a complete release: it has no ${MANIFEST_NAME}`, {
      details: names.size ? [`  files there: ${[...names].sort().join(', ')}`] : ['  the directory is empty or does not exist'],
      hint: 'give the release directory <target>/<recipe id>/<version>; a publish that was interrupted is completed by running it again',
    })
  }
  const notAManifest = (why: string) =>
    new ConflictError(`${store.location}/${MANIFEST_NAME} is not a cvm-image manifest (${why})`, {hint: 'the release was damaged or is not one cvm-image published'})
  const manifestData = await store.readFile(MANIFEST_NAME)
  let manifest: Manifest | null
  try {
    manifest = JSON.parse(manifestData.toString('utf8')) as Manifest | null
  } catch (e) {
    throw notAManifest((e as Error).message)
  }
  if (!Array.isArray(manifest?.artifacts) || !manifest.provenance?.sha256) throw notAManifest('it names no artifacts or provenance')
  const expected = [
    ...manifest.artifacts.map((a) => ({name: a.name, sha256: a.sha256})),
    {name: manifest.provenance.name, sha256: manifest.provenance.sha256},
    ...(manifest.validationStatement ? [{name: manifest.validationStatement.name, sha256: manifest.validationStatement.sha256}] : []),
  ]
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
  // SHA256SUMS must say what the manifest says, line for line; a signed one also lists manifest.json itself
  const signedSums = manifest.signing?.checksums.status === 'signed'
  const sumsExpected = sha256(checksumsText(signedSums ? [...expected, {name: MANIFEST_NAME, sha256: sha256(manifestData)}] : expected))
  const sumsData = names.has(CHECKSUMS_NAME) ? await store.readFile(CHECKSUMS_NAME) : undefined
  if (!sumsData) files.push({name: CHECKSUMS_NAME, expected: sumsExpected, sha256: null, size: null, verdict: 'missing'})
  else {
    const got = sha256(sumsData)
    // the manifest as SHA256SUMS lists it: a manifest changed after its release was signed is named
    const listed = /^([0-9a-f]{64}) {2}manifest\.json$/m.exec(sumsData.toString('utf8'))?.[1]
    if (listed && listed !== sha256(manifestData)) files.push({name: MANIFEST_NAME, expected: listed, sha256: sha256(manifestData), size: manifestData.length, verdict: 'differs'})
    files.push({name: CHECKSUMS_NAME, expected: sumsExpected, sha256: got, size: sumsData.length, verdict: got === sumsExpected ? 'ok' : 'differs'})
  }
  const signatures = await checkSignatures(store, names, manifest, sumsData, keys)

  const result: VerifyResult = {location: store.location, recipeId: manifest.recipe?.id, version: manifest.version, intact: files.every((f) => f.verdict === 'ok'), files, signatures}
  const bad = files.filter((f) => f.verdict !== 'ok')
  const badSigs = signatures.filter((s) => s.verdict !== 'ok')
  if (bad.length > 0 || badSigs.length > 0) {
    const what = [
      ...(bad.length > 0 ? [`${bad.map((f) => f.name).join(', ')} ${bad.length === 1 ? 'differs from' : 'differ from'} its manifest.json`] : []),
      ...(badSigs.length > 0 ? [`the signature of ${badSigs.map((s) => s.name).join(', ')} is bad or missing`] : []),
    ]
    const culprits = [...new Set([...bad, ...badSigs].map((f) => f.name))]
    throw new ConflictError(`${store.location} does not verify: ${what.join('; ')}`, {
      details: [
        ...bad.map((f) => (f.verdict === 'missing' ? `  ${f.name}: missing (the manifest says sha256 ${f.expected})` : `  ${f.name}: sha256 ${f.sha256} at the target, the manifest says ${f.expected}`)),
        ...badSigs.map((s) => `  ${s.name}: signature ${s.verdict}: ${s.detail}`),
      ],
      hint: `re-publish the same build to repair it (publish puts back a damaged file of its own release), or withdraw the release; do not use ${culprits.join(', ')}`,
    })
  }
  return result
}

/**
 * With keys given, every signature their kind covers must be there and good: SHA256SUMS.gpg by one of
 * the OpenPGP keys (gpgv), provenance.intoto.json and validation.intoto.json as DSSE envelopes by one of
 * the PEM keys, about this release's artifacts and disk. Which files are signed is fixed here, never
 * taken from the manifest: a release stripped of its signatures fails.
 */
async function checkSignatures(store: ReleaseStore, names: Set<string>, manifest: Manifest, sumsData: Buffer | undefined, keys: VerifyKeys): Promise<VerifyResult['signatures']> {
  const out: VerifyResult['signatures'] = []
  if (keys.openpgp.length > 0) {
    const name = CHECKSUMS_SIGNATURE_NAME
    if (!names.has(name) || !sumsData) out.push({name, kind: 'openpgp', verdict: 'missing', detail: `no ${names.has(name) ? CHECKSUMS_NAME : name} at the release: it is not signed`})
    else {
      const sig = await store.readFile(name)
      let verdict: 'ok' | 'bad' = 'bad'
      let detail = `gpgv finds no good signature of ${CHECKSUMS_NAME} by ${keys.openpgp.map((k) => k.file).join(', ')}`
      for (const k of keys.openpgp) {
        const r = await gpgvVerify(k.data, sig, sumsData)
        if (r.good) {
          verdict = 'ok'
          detail = `good signature of ${CHECKSUMS_NAME} by ${r.fingerprint} (${k.file})`
          break
        }
      }
      out.push({name, kind: 'openpgp', verdict, detail})
    }
  }
  if (keys.pem.length > 0) {
    const artifacts = manifest.artifacts.map((a) => `${a.name}=${a.sha256}`).sort().join(' ')
    const subjects = (st: Record<string, unknown>) => ((st.subject ?? []) as {name: string; digest?: {sha256?: string}}[]).map((s) => `${s.name}=${s.digest?.sha256}`).sort().join(' ')
    const about: Record<string, (st: Record<string, unknown>) => string | undefined> = {
      [PROVENANCE_NAME]: (st) => (subjects(st) === artifacts ? undefined : `its subjects (${subjects(st)}) are not the manifest's artifacts`),
      [VALIDATION_STATEMENT_NAME]: (st) => (subjects(st) === `disk.raw=${manifest.disk?.sha256}` ? undefined : `its subject (${subjects(st)}) is not the manifest's disk sha256 ${manifest.disk?.sha256}`),
    }
    for (const [name, check] of Object.entries(about)) {
      if (!names.has(name)) {
        out.push({name, kind: 'dsse', verdict: 'missing', detail: `no ${name} at the release`})
        continue
      }
      const data = await store.readFile(name)
      const tried = keys.pem.map((k) => ({k, r: verifyEnvelope(data, k.key)}))
      const good = tried.find((t) => t.r.ok)
      if (!good || !good.r.ok) {
        out.push({name, kind: 'dsse', verdict: 'bad', detail: tried.map((t) => (t.r.ok ? '' : `${t.k.file}: ${t.r.reason}`)).join('; ')})
        continue
      }
      const wrong = good.r.statement._type === 'https://in-toto.io/Statement/v1' ? check(good.r.statement) : `its payload is not an in-toto Statement v1`
      out.push({name, kind: 'dsse', verdict: wrong ? 'bad' : 'ok', detail: wrong ?? `good DSSE signature by ${good.k.file}`})
    }
  }
  return out
}
