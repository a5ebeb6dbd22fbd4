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

/**
 * Reads the attestation key from where the user points. Only Ed25519: its signatures are deterministic,
 * so a re-publish of the same build makes the same envelope bytes (ECDSA would make new ones each time,
 * and the manifest, which records the envelopes' sha256, would then conflict with the published one).
 */
export async function loadAttestationSigner(file: string, opts: {passphraseFile?: string} = {}): Promise<AttestationSigner> {
  const pem = readPrivateKeyFile(file, {flag: '--attestation-key'})
  const passphrase = opts.passphraseFile ? readPassphraseFile(opts.passphraseFile, {flag: '--attestation-key-passphrase-file'}) : undefined
  let key: KeyObject
  try {
    // an empty passphrase when none is given: Node would otherwise prompt on the terminal
    key = createPrivateKey({key: pem, passphrase: passphrase ?? ''})
  } catch (e) {
    const encrypted = /passphrase|password|bad decrypt|interrupted or cancelled/i.test((e as Error).message)
    if (encrypted) {
      throw new InputError(`--attestation-key ${file} ${passphrase === undefined ? 'is encrypted' : 'cannot be opened with the passphrase of --attestation-key-passphrase-file'}`, {
        hint: passphrase === undefined ? 'give its passphrase in a file only you can read: --attestation-key-passphrase-file <file> (its first line)' : `check the first line of ${opts.passphraseFile}`,
      })
    }
    throw new InputError(`--attestation-key ${file} is not a PEM private key (${(e as Error).message})`, {hint: 'make one with: openssl genpkey -algorithm ed25519 -out attestation-key.pem', cause: e})
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new InputError(`--attestation-key ${file} is a ${key.asymmetricKeyType} key; DSSE envelopes are signed with Ed25519 here`, {
      hint: 'Ed25519 signatures are deterministic, so re-publishing a release gives the same bytes: openssl genpkey -algorithm ed25519 -out attestation-key.pem',
    })
  }
  const keyid = keyIdOf(key)
  return {
    keyid,
    algorithm: 'ed25519',
    envelope(statement) {
      const body = Buffer.from(JSON.stringify(statement), 'utf8')
      const env: DsseEnvelope = {
        payloadType: IN_TOTO_PAYLOAD_TYPE,
        payload: body.toString('base64'),
        signatures: [{keyid, sig: sign(null, pae(IN_TOTO_PAYLOAD_TYPE, body), key).toString('base64')}],
      }
      return Buffer.from(JSON.stringify(env, null, 2) + '\n')
    },
  }
}

/**
 * Checks an envelope against a PEM public key (Ed25519, or ECDSA / RSA with SHA-256): the payload type is
 * in-toto's and one of its signatures verifies over PAE. Returns the statement, or why it does not verify.
 */
export function verifyEnvelope(data: Buffer, publicKey: KeyObject): {ok: true; statement: Record<string, unknown>} | {ok: false; reason: string} {
  let env: DsseEnvelope
  try {
    env = JSON.parse(data.toString('utf8')) as DsseEnvelope
  } catch {
    return {ok: false, reason: 'not a DSSE envelope (not JSON)'}
  }
  if (typeof env?.payload !== 'string' || !Array.isArray(env.signatures)) return {ok: false, reason: 'not a DSSE envelope (no payload or signatures): it is unsigned'}
  if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE) return {ok: false, reason: `payloadType is ${JSON.stringify(env.payloadType)}, not ${IN_TOTO_PAYLOAD_TYPE}`}
  const body = Buffer.from(env.payload, 'base64')
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
