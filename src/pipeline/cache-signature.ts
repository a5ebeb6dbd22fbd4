import {createPrivateKey, createPublicKey, sign, verify, type KeyObject} from 'node:crypto'
import {readFileSync} from 'node:fs'

import {InputError} from '../errors.js'
import {keyIdOf, pae, type DsseEnvelope} from '../publish/dsse.js'
import {readPrivateKeyFile} from '../util/private-key.js'
import type {StageName} from './stage-names.js'

/** DSSE payload type of a remote cache entry's signature: the body names the stage, the key and the manifest digest. */
export const ENTRY_PAYLOAD_TYPE = 'application/vnd.cvm-image.stage-entry.v1+json'

/** What a signature vouches for: this manifest is the output of this stage under this key (a retag to another key fails). */
export interface EntryClaim {
  stage: StageName
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
  const pem = readPrivateKeyFile(file, {flag})
  let key: KeyObject
  try {
    // an empty passphrase: Node would otherwise prompt on the terminal for an encrypted key
    key = createPrivateKey({key: pem, passphrase: ''})
  } catch (e) {
    throw new InputError(`${flag} ${file} is not an unencrypted PEM private key (${(e as Error).message})`, {hint: 'make one with: openssl genpkey -algorithm ed25519 -out cache-key.pem', cause: e})
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new InputError(`${flag} ${file} is a ${key.asymmetricKeyType} key; cache entries are signed with Ed25519`, {hint: 'openssl genpkey -algorithm ed25519 -out cache-key.pem'})
  const keyid = keyIdOf(key)
  return {
    keyid,
    publicKey: createPublicKey(key),
    envelope(claim) {
      const body = Buffer.from(JSON.stringify({stage: claim.stage, key: claim.key, manifest: claim.manifest}), 'utf8')
      const env: DsseEnvelope = {payloadType: ENTRY_PAYLOAD_TYPE, payload: body.toString('base64'), signatures: [{keyid, sig: sign(null, pae(ENTRY_PAYLOAD_TYPE, body), key).toString('base64')}]}
      return Buffer.from(JSON.stringify(env) + '\n')
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
  let env: DsseEnvelope
  try {
    env = JSON.parse(data.toString('utf8')) as DsseEnvelope
  } catch {
    return {ok: false, reason: 'its signature is not a DSSE envelope (not JSON)'}
  }
  if (typeof env?.payload !== 'string' || !Array.isArray(env.signatures)) return {ok: false, reason: 'its signature is not a DSSE envelope'}
  if (env.payloadType !== ENTRY_PAYLOAD_TYPE) return {ok: false, reason: `its signature's payloadType is ${JSON.stringify(env.payloadType)}, not ${ENTRY_PAYLOAD_TYPE}`}
  if (trusted.length === 0) return {ok: false, reason: 'no key is trusted (--cache-trust)'}
  const body = Buffer.from(env.payload, 'base64')
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
