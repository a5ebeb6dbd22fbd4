import {createPrivateKey, createPublicKey, X509Certificate, type KeyObject} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {mkdtemp, rename, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {InputError} from '../errors.js'
import {run} from '../util/exec.js'
import {sha256} from '../util/fsx.js'
import {readPassphraseFile, readPrivateKeyFile} from '../util/private-key.js'

/**
 * UEFI Secure Boot signing of the UKI (docs/secure-boot.md). The key signs; the certificate is what
 * a firmware's signature database (db) holds to accept it, and is public: it goes into the stage
 * key and the manifest. The key is read where the user keeps it, only to sign, and never copied.
 */
export interface SecureBootSigner {
  keyFile: string
  certFile: string
  /** a file whose first line is the key's passphrase; without it the key must be unencrypted */
  passphraseFile?: string
}

/** What a release says of the certificate that signed its UKI. */
export interface SigningCertificate {
  /** sha256 of the certificate's DER bytes */
  sha256: string
  subject: string
  notAfter: string
  /** the certificate, PEM */
  pem: string
}

/** Reads and checks the certificate: X.509 (PEM or DER) with an RSA key, the kind every UEFI firmware verifies. */
export function readSigningCertificate(certFile: string): SigningCertificate {
  return parseCertificate(certFile).info
}

function parseCertificate(certFile: string): {cert: X509Certificate; info: SigningCertificate} {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(readFileSync(certFile))
  } catch (e) {
    throw new InputError(`--signing-cert ${certFile} is not an X.509 certificate (PEM or DER): ${(e as Error).message}`, {
      hint: 'give the certificate whose key signs (the one the firmware db holds), e.g. openssl x509 -in cert.pem -noout -text shows it',
    })
  }
  const type = cert.publicKey.asymmetricKeyType
  if (type !== 'rsa') {
    throw new InputError(`--signing-cert ${certFile} has a ${type} key; UEFI firmware verifies RSA signatures (RSA-2048 is what the UEFI specification requires every firmware to take)`, {
      hint: 'make an RSA key and certificate: openssl req -new -x509 -newkey rsa:2048 -nodes -keyout db.key -out db.pem -days 3650 -subj "/CN=my db key/"',
    })
  }
  return {cert, info: {sha256: sha256(cert.raw), subject: cert.subject.replace(/\n/g, ', '), notAfter: new Date(cert.validTo).toISOString(), pem: cert.toString()}}
}

/**
 * Checks a key and certificate before any work (exit 2 with what to do): the certificate as
 * readSigningCertificate does, a key file only its owner can read, that its passphrase (if any)
 * opens, and the key the certificate is for.
 */
export function checkSigningPair(s: SecureBootSigner): SigningCertificate {
  const {cert, info} = parseCertificate(s.certFile)
  const pem = readPrivateKeyFile(s.keyFile, {flag: '--signing-key'})
  const passphrase = s.passphraseFile ? readPassphraseFile(s.passphraseFile, {flag: '--signing-key-passphrase-file'}) : undefined
  let key: KeyObject
  try {
    // an empty passphrase for an unprotected call: Node would otherwise ask on the terminal
    key = createPrivateKey({key: pem, passphrase: passphrase ?? ''})
  } catch (e) {
    const encrypted = /passphrase|password|bad decrypt|interrupted or cancelled/i.test((e as Error).message)
    throw new InputError(`--signing-key ${s.keyFile} ${encrypted ? (passphrase === undefined ? 'is encrypted' : 'cannot be opened with the passphrase of --signing-key-passphrase-file') : `is not a private key (PEM or DER): ${(e as Error).message}`}`, {
      hint: encrypted
        ? passphrase === undefined
          ? 'give its passphrase in a file only you can read: --signing-key-passphrase-file <file> (its first line)'
          : `check the first line of ${s.passphraseFile}`
        : 'give the private key of --signing-cert, PEM',
    })
  }
  const pub = (k: KeyObject) => (k.type === 'private' ? createPublicKey(k) : k).export({type: 'spki', format: 'der'})
  if (!pub(key).equals(pub(cert.publicKey))) {
    throw new InputError(`--signing-key ${s.keyFile} is not the key of --signing-cert ${s.certFile} (${info.subject})`, {hint: 'give the key and the certificate of one pair'})
  }
  return info
}

/**
 * Signs a PE file (the UKI) in place with an Authenticode signature, SHA-256, as UEFI Secure Boot
 * checks it. osslsigncode (Debian's package) rather than sbsign: it takes the signing time, set to
 * the build's SOURCE_DATE_EPOCH, so the same inputs give the same signed bytes (sbsign stamps the
 * time of signing). RSA PKCS#1 v1.5 signatures are deterministic, so the whole file is.
 */
export async function signPe(file: string, signer: SecureBootSigner, sourceDateEpoch: number, logFile?: string): Promise<void> {
  const out = `${file}.signed`
  readPrivateKeyFile(signer.keyFile, {flag: '--signing-key'})
  // the passphrase reaches osslsigncode as a file (-readpass FILE), never in argv, which every local user can
  // read: its first line alone, in a directory only this user can enter, removed at once. Not stdin: bookworm's
  // osslsigncode 2.5 takes no "-", and node's stdin is a socket that /dev/stdin cannot open. A key with no
  // passphrase gets no -readpass: checkSigningPair has refused an encrypted key without one.
  const passphrase = signer.passphraseFile ? readPassphraseFile(signer.passphraseFile, {flag: '--signing-key-passphrase-file'}) : undefined
  const passDir = passphrase === undefined ? undefined : await mkdtemp(join(tmpdir(), 'cvm-image-readpass-'))
  try {
    const readpass = passDir ? ['-readpass', join(passDir, 'passphrase')] : []
    if (passDir) await writeFile(join(passDir, 'passphrase'), passphrase!, {mode: 0o600})
    await run('osslsigncode', ['sign', '-h', 'sha256', '-certs', signer.certFile, '-key', signer.keyFile, ...readpass, '-time', String(sourceDateEpoch), '-in', file, '-out', out], {
      what: 'sign the UKI for Secure Boot (osslsigncode)',
      logFile,
      // stdin closed: a key that wants a passphrase it was not given fails at once instead of prompting
      input: '',
    })
  } finally {
    if (passDir) await rm(passDir, {recursive: true, force: true})
  }
  await rename(out, file)
}
