import {createPublicKey, verify, type KeyObject} from 'node:crypto'
import {readFileSync} from 'node:fs'

import {InputError} from '../errors.js'
import {keyIdOf, pae, readEd25519Key, readEnvelope, signEnvelope} from '../publish/dsse.js'
import type {StageName} from './stage-names.js'

/** DSSE payload type of a remote cache entry's signature: the body names the stage, the key and the manifest digest. */
export const ENTRY_PAYLOAD_TYPE = 'application/vnd.cvm-image.stage-entry.v1+json'

/**
 * What an entry is the output of: a stage, or one of publish's format files (`format-qcow2`, made
 * from an assembled disk: docs/remote-cache.md "Publish's formats").
 */
export type EntryKind = StageName | `format-${string}`

/** What a signature vouches for: this manifest is the output of this stage (or format) under this key (a retag to another key fails). */
export interface EntryClaim {
  stage: EntryKind
  key: string
  manifest: string
}

/** A runner's signing key for the entries it pushes: Ed25519, as the release attestations use. */
export interface CacheSigner {
  keyid: string
  publicKey: KeyObject
  envelope(claim: EntryClaim): Buffer
}

export function loadCacheSigner(file: string, flag = '--cache-key'): CacheSigner {
  const key = readEd25519Key(file, {flag, whyEd25519: 'cache entries are signed with Ed25519', make: 'openssl genpkey -algorithm ed25519 -out cache-key.pem'})
  const keyid = keyIdOf(key)
  return {
    keyid,
    publicKey: createPublicKey(key),
    envelope(claim) {
      const body = Buffer.from(JSON.stringify({stage: claim.stage, key: claim.key, manifest: claim.manifest}), 'utf8')
      return Buffer.from(JSON.stringify(signEnvelope(ENTRY_PAYLOAD_TYPE, body, key, keyid)) + '\n')
    },
  }
}

/** A trusted public key (PEM: `openssl pkey -in cache-key.pem -pubout`). */
export function loadTrustedKey(file: string, flag = '--cache-trust'): KeyObject {
  let key: KeyObject
  try {
    key = createPublicKey(readFileSync(file))
  } catch (e) {
    throw new InputError(`${flag} ${file} is not a PEM public key (${(e as Error).message})`, {hint: 'give the public half of a runner\'s key: openssl pkey -in cache-key.pem -pubout -out cache-key.pub', cause: e})
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new InputError(`${flag} ${file} is a ${key.asymmetricKeyType} key; cache entries are signed with Ed25519`, {hint: 'give the public half of the runner\'s Ed25519 cache key'})
  return key
}

/**
 * The claim of an envelope one of the trusted keys signed, or why none did. Only signatures whose
 * keyid names a trusted key are tried; an unknown key is a reason, not an error.
 */
export function verifyEntryEnvelope(data: Buffer, trusted: KeyObject[]): {ok: true; claim: EntryClaim; keyid: string} | {ok: false; reason: string} {
  const read = readEnvelope(data, ENTRY_PAYLOAD_TYPE)
  if (!read.ok) return {ok: false, reason: `its signature: ${read.reason}`}
  if (trusted.length === 0) return {ok: false, reason: 'no key is trusted (--cache-trust)'}
  const {env, body} = read
  const signed = pae(ENTRY_PAYLOAD_TYPE, body)
  const byId = new Map(trusted.map((k) => [keyIdOf(k), k]))
  for (const s of env.signatures) {
    const key = byId.get(s?.keyid)
    if (!key || typeof s.sig !== 'string') continue
    let good = false
    try {
      good = verify(null, signed, key, Buffer.from(s.sig, 'base64'))
    } catch {
      good = false
    }
    if (!good) return {ok: false, reason: `its signature by trusted key ${s.keyid.slice(0, 16)} does not verify`}
    try {
      const claim = JSON.parse(body.toString('utf8')) as EntryClaim
      if (typeof claim?.stage !== 'string' || typeof claim.key !== 'string' || typeof claim.manifest !== 'string') return {ok: false, reason: 'its signed claim lacks stage, key or manifest'}
      return {ok: true, claim, keyid: s.keyid}
    } catch {
      return {ok: false, reason: 'its signed claim is not JSON'}
    }
  }
  const ids = env.signatures.map((s) => String(s?.keyid ?? '?').slice(0, 16)).join(', ')
  return {ok: false, reason: `it is signed by key ${ids || '(none)'}, which is not in the trusted list`}
}
