import {createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject} from 'node:crypto'
import {InputError} from '../errors.js'
import {readPassphraseFile, readPrivateKeyFile} from '../util/private-key.js'

/** DSSE's payload type for an in-toto Statement */
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json'

/** A DSSE envelope as JSON holds it (github.com/secure-systems-lab/dsse, envelope.md). */
export interface DsseEnvelope {
  payloadType: string
  /** base64 of the serialized body */
  payload: string
  signatures: {keyid: string; sig: string}[]
}

/** DSSE's pre-authentication encoding, the bytes a signature covers: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body. */
export function pae(payloadType: string, body: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8')
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${body.length} `), body])
}

/** keyid: lowercase hex sha256 of the public key's DER SubjectPublicKeyInfo (`openssl pkey -pubin -outform DER | sha256sum`). */
export function keyIdOf(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key
  return createHash('sha256').update(pub.export({type: 'spki', format: 'der'})).digest('hex')
}

/** The user's attestation key: an Ed25519 private key in PEM (`openssl genpkey -algorithm ed25519`). */
export interface AttestationSigner {
  keyid: string
  algorithm: 'ed25519'
  /** a DSSE envelope of the statement, serialized as the release file holds it */
  envelope(statement: unknown): Buffer
}

/** What an Ed25519 key is for, for the messages of readEd25519Key. */
export interface Ed25519KeyUse {
  /** the flag that named the key file */
  flag: string
  /** why Ed25519, the message's end for a key of another type */
  whyEd25519: string
  /** the command that makes such a key */
  make: string
  /** its passphrase file and that file's flag; without a flag the key cannot take one */
  passphraseFile?: string
  passphraseFlag?: string
}

/**
 * An Ed25519 private key in PEM, read where the user points (mode 600, src/util/private-key.ts), with
 * its passphrase file when encrypted: the one reader of the release attestation key and the remote
 * cache's signing key.
 */
export function readEd25519Key(file: string, use: Ed25519KeyUse): KeyObject {
  const pem = readPrivateKeyFile(file, {flag: use.flag})
  const passphrase = use.passphraseFile && use.passphraseFlag ? readPassphraseFile(use.passphraseFile, {flag: use.passphraseFlag}) : undefined
  let key: KeyObject
  try {
    // an empty passphrase when none is given: Node would otherwise prompt on the terminal
    key = createPrivateKey({key: pem, passphrase: passphrase ?? ''})
  } catch (e) {
    const encrypted = /passphrase|password|bad decrypt|interrupted or cancelled/i.test((e as Error).message)
    if (encrypted) {
      throw new InputError(`${use.flag} ${file} ${passphrase === undefined ? 'is encrypted' : `cannot be opened with the passphrase of ${use.passphraseFlag}`}`, {
        hint:
          passphrase !== undefined
            ? `check the first line of ${use.passphraseFile}`
            : use.passphraseFlag
              ? `give its passphrase in a file only you can read: ${use.passphraseFlag} <file> (its first line)`
              : `it is read unattended, with no passphrase: give an unencrypted key (${use.make})`,
      })
    }
    throw new InputError(`${use.flag} ${file} is not a PEM private key (${(e as Error).message})`, {hint: `make one with: ${use.make}`, cause: e})
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new InputError(`${use.flag} ${file} is a ${key.asymmetricKeyType} key; ${use.whyEd25519}`, {hint: use.make})
  return key
}

/** A DSSE envelope of body, signed over PAE with an Ed25519 key. */
export function signEnvelope(payloadType: string, body: Buffer, key: KeyObject, keyid: string = keyIdOf(key)): DsseEnvelope {
  return {payloadType, payload: body.toString('base64'), signatures: [{keyid, sig: sign(null, pae(payloadType, body), key).toString('base64')}]}
}

/** An envelope's parts when the bytes are one of this payload type, or why they are not. */
export function readEnvelope(data: Buffer, payloadType: string): {ok: true; env: DsseEnvelope; body: Buffer} | {ok: false; reason: string} {
  let env: DsseEnvelope
  try {
    env = JSON.parse(data.toString('utf8')) as DsseEnvelope
  } catch {
    return {ok: false, reason: 'not a DSSE envelope (not JSON)'}
  }
  if (typeof env?.payload !== 'string' || !Array.isArray(env.signatures)) return {ok: false, reason: 'not a DSSE envelope (no payload or signatures)'}
  if (env.payloadType !== payloadType) return {ok: false, reason: `payloadType is ${JSON.stringify(env.payloadType)}, not ${payloadType}`}
  return {ok: true, env, body: Buffer.from(env.payload, 'base64')}
}

/**
 * Reads the attestation key from where the user points. Only Ed25519: its signatures are deterministic,
 * so a re-publish of the same build makes the same envelope bytes (ECDSA would make new ones each time,
 * and the manifest, which records the envelopes' sha256, would then conflict with the published one).
 */
export async function loadAttestationSigner(file: string, opts: {passphraseFile?: string} = {}): Promise<AttestationSigner> {
  const key = readEd25519Key(file, {
    flag: '--attestation-key',
    whyEd25519: 'DSSE envelopes are signed with Ed25519 here',
    make: 'openssl genpkey -algorithm ed25519 -out attestation-key.pem (Ed25519 signatures are deterministic, so re-publishing a release gives the same bytes)',
    passphraseFile: opts.passphraseFile,
    passphraseFlag: '--attestation-key-passphrase-file',
  })
  const keyid = keyIdOf(key)
  return {
    keyid,
    algorithm: 'ed25519',
    envelope: (statement) => Buffer.from(JSON.stringify(signEnvelope(IN_TOTO_PAYLOAD_TYPE, Buffer.from(JSON.stringify(statement), 'utf8'), key, keyid), null, 2) + '\n'),
  }
}

/**
 * Checks an envelope against a PEM public key (Ed25519, or ECDSA / RSA with SHA-256): the payload type is
 * in-toto's and one of its signatures verifies over PAE. Returns the statement, or why it does not verify.
 */
export function verifyEnvelope(data: Buffer, publicKey: KeyObject): {ok: true; statement: Record<string, unknown>} | {ok: false; reason: string} {
  const read = readEnvelope(data, IN_TOTO_PAYLOAD_TYPE)
  if (!read.ok) return {ok: false, reason: read.reason.startsWith('not a DSSE envelope (no payload') ? `${read.reason}: it is unsigned` : read.reason}
  const {env, body} = read
  const signed = pae(env.payloadType, body)
  const algorithm = publicKey.asymmetricKeyType === 'ed25519' || publicKey.asymmetricKeyType === 'ed448' ? null : 'sha256'
  const good = env.signatures.some((s) => {
    try {
      return typeof s?.sig === 'string' && verify(algorithm, signed, publicKey, Buffer.from(s.sig, 'base64'))
    } catch {
      return false
    }
  })
  if (!good) return {ok: false, reason: `none of its ${env.signatures.length} signature(s) verifies with key ${keyIdOf(publicKey)}`}
  try {
    return {ok: true, statement: JSON.parse(body.toString('utf8')) as Record<string, unknown>}
  } catch {
    return {ok: false, reason: 'its signed payload is not JSON'}
  }
}
