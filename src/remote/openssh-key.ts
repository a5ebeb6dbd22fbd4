import {generateKeyPairSync, randomBytes} from 'node:crypto'

import {BugError} from '../errors.js'

/**
 * An ed25519 key pair in OpenSSH's own forms: the private key as `ssh-keygen` writes it
 * (openssh-key-v1, unencrypted) and the public key as an authorized_keys line. Made from node's
 * crypto and encoded here, byte for byte, so that every key is well formed: ssh2's own generator
 * drops a leading zero byte of the public key about once in 256 keys, and neither ssh2 nor OpenSSH
 * can read such a key back.
 */
export interface OpenSshKeyPair {
  private: string
  public: string
}

const KEY_TYPE = 'ssh-ed25519'

export function generateEd25519(comment: string): OpenSshKeyPair {
  // The DER forms come out of the generation itself. Exporting the KeyObjects afterwards (as JWK)
  // deadlocked Node 20 about once in 700,000 keys, for good: the export holds the key's mutex while
  // it allocates, the allocation can start a garbage collection, and the collection destroys the
  // finished generation job, whose destructor takes the same mutex (docs/testing.md "Hangs").
  const {publicKey, privateKey} = generateKeyPairSync('ed25519', {
    publicKeyEncoding: {type: 'spki', format: 'der'},
    privateKeyEncoding: {type: 'pkcs8', format: 'der'},
  })
  const pub = rawKey(publicKey, SPKI_PREFIX, 'public')
  const seed = rawKey(privateKey, PKCS8_PREFIX, 'private')
  return {private: encodePrivate(pub, seed, comment), public: `${KEY_TYPE} ${publicBlob(pub).toString('base64')} ${comment}\n`}
}

// RFC 8410: an Ed25519 SubjectPublicKeyInfo is this prefix and the 32-byte public key; the PKCS #8
// PrivateKeyInfo OpenSSL writes is this prefix and the 32-byte seed (a CurvePrivateKey octet string)
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

function rawKey(der: Buffer, prefix: Buffer, which: string): Buffer {
  if (der.length !== prefix.length + 32 || !der.subarray(0, prefix.length).equals(prefix)) {
    throw new BugError(`node wrote an ed25519 ${which} key of ${der.length} bytes not in the RFC 8410 form (${der.toString('hex')})`)
  }
  return der.subarray(prefix.length)
}

/** The SSH wire form of the public key: string "ssh-ed25519", string <32 bytes>. */
function publicBlob(pub: Buffer): Buffer {
  return Buffer.concat([sshString(KEY_TYPE), sshString(pub)])
}

/** PROTOCOL.key of OpenSSH: magic, cipher/kdf "none", one public key, then the private section padded to 8 bytes. */
function encodePrivate(pub: Buffer, seed: Buffer, comment: string): string {
  const check = randomBytes(4)
  const section = [check, check, sshString(KEY_TYPE), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]
  let body = Buffer.concat(section)
  const pad = (8 - (body.length % 8)) % 8
  body = Buffer.concat([body, Buffer.from(Array.from({length: pad}, (_, i) => i + 1))])
  const whole = Buffer.concat([Buffer.from('openssh-key-v1\0', 'latin1'), sshString('none'), sshString('none'), sshString(''), uint32(1), sshString(publicBlob(pub)), sshString(body)])
  const lines = whole.toString('base64').match(/.{1,70}/g)!
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines.join('\n')}\n-----END OPENSSH PRIVATE KEY-----\n`
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}

function sshString(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s
  return Buffer.concat([uint32(b.length), b])
}
