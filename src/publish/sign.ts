import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {InputError} from '../errors.js'
import {run} from '../util/exec.js'
import {readPassphraseFile, readPrivateKeyFile} from '../util/private-key.js'

/** The detached OpenPGP signature of SHA256SUMS, as Debian and Ubuntu publish beside their cloud images. */
export const CHECKSUMS_SIGNATURE_NAME = 'SHA256SUMS.gpg'

/** Where the user's OpenPGP release key is: an armored (or binary) secret key file holding one secret key. */
export interface ReleaseKeyOptions {
  /** the secret key file (gpg --armor --export-secret-keys) */
  keyFile: string
  /** a file whose first line is the key's passphrase; without it the key must be unprotected */
  passphraseFile?: string
}

/**
 * A temporary GNUPGHOME (mode 0700, under $TMPDIR), removed with its agent afterwards whatever happens.
 * The user's keys are imported into it only for the time of fn: never into the cache, the logs or the release.
 */
async function withTempGnupgHome<T>(fn: (home: string) => Promise<T>): Promise<T> {
  const home = await mkdtemp(join(tmpdir(), 'cvm-gpg-'))
  try {
    return await fn(home)
  } finally {
    await run('gpgconf', ['--homedir', home, '--kill', 'all'], {reject: false}).catch(() => undefined)
    // where /run/user/<uid> exists, the agent's sockets live in a directory there of their own
    await run('gpgconf', ['--homedir', home, '--remove-socketdir'], {reject: false}).catch(() => undefined)
    await rm(home, {recursive: true, force: true})
  }
}

const gpgBase = (home: string) => ['--homedir', home, '--batch', '--no-tty', '--no-auto-check-trustdb', '--no-permission-warning']

/** fingerprints of the primary keys gpg lists (--with-colons: a fpr record follows each pub/sec record) */
function primaryFingerprints(colons: string, kind: 'sec' | 'pub'): string[] {
  const out: string[] = []
  let want = false
  for (const line of colons.split('\n')) {
    const f = line.split(':')
    if (f[0] === kind) want = true
    else if (f[0] === 'fpr' && want) {
      out.push(f[9])
      want = false
    } else if (f[0] === 'ssb' || f[0] === 'sub') want = false
  }
  return out
}

/** The release key as publish uses it: who signs (recorded in the manifest) and the public key a signature is checked with. */
export interface ReleaseKeyInfo {
  /** the signing key's primary fingerprint (40 hex, upper case as gpg prints it) */
  fingerprint: string
  /** its public key, binary OpenPGP: a keyring gpgv reads */
  publicKeyring: Buffer
}

/** Imports the key file into home: its one secret key's fingerprint, and gpg's passphrase arguments. A file with none or several is bad input. */
async function importKey(home: string, key: ReleaseKeyOptions): Promise<{fingerprint: string; pass: string[]}> {
  // gpg reads both files itself: here only their modes are judged, as every private key's are
  readPrivateKeyFile(key.keyFile, {flag: '--release-key'})
  if (key.passphraseFile) readPassphraseFile(key.passphraseFile, {flag: '--release-key-passphrase-file'})
  const base = gpgBase(home)
  const pass = ['--pinentry-mode', 'loopback', ...(key.passphraseFile ? ['--passphrase-file', key.passphraseFile] : ['--passphrase', ''])]
  const imported = await run('gpg', [...base, ...pass, '--import', key.keyFile], {reject: false, what: 'import the release key into a temporary GNUPGHOME'})
  const listed = await run('gpg', [...base, '--with-colons', '--list-secret-keys'], {reject: false})
  const fprs = primaryFingerprints(listed.stdout, 'sec')
  if (imported.exitCode !== 0 || fprs.length !== 1) {
    throw new InputError(`--release-key ${key.keyFile} ${fprs.length > 1 ? `holds ${fprs.length} secret keys; give a file with one` : 'holds no OpenPGP secret key gpg could import'}`, {
      details: imported.stderr.split('\n').filter(Boolean).slice(-5).map((l) => `  | ${l}`),
      hint: 'export the one release key: gpg --armor --export-secret-keys <fingerprint> > release-key.asc',
    })
  }
  return {fingerprint: fprs[0], pass}
}

async function signIn(home: string, key: ReleaseKeyOptions, imported: {fingerprint: string; pass: string[]}, data: Buffer): Promise<Buffer> {
  const input = join(home, 'data')
  const out = join(home, 'data.asc')
  await writeFile(input, data)
  await rm(out, {force: true})
  const r = await run('gpg', [...gpgBase(home), ...imported.pass, '--local-user', imported.fingerprint, '--digest-algo', 'SHA512', '--armor', '--detach-sign', '--output', out, input], {reject: false})
  if (r.exitCode !== 0) {
    throw new InputError(`cannot sign with the release key ${imported.fingerprint} from ${key.keyFile}`, {
      details: r.stderr.split('\n').filter(Boolean).slice(-5).map((l) => `  | ${l}`),
      hint: key.passphraseFile ? 'check the passphrase file (its first line is the passphrase)' : 'a key protected by a passphrase needs --release-key-passphrase-file',
    })
  }
  return readFile(out)
}

/** Reads the release key (in a temporary GNUPGHOME, removed at once) and proves it can sign: a bad key or passphrase fails before any work. */
export async function inspectReleaseKey(key: ReleaseKeyOptions): Promise<ReleaseKeyInfo> {
  return withTempGnupgHome(async (home) => {
    const imported = await importKey(home, key)
    await signIn(home, key, imported, Buffer.from('cvm-image release key check\n'))
    await run('gpg', [...gpgBase(home), '--export', imported.fingerprint], {stdoutFile: join(home, 'pub.gpg'), what: "export the release key's public key"})
    return {fingerprint: imported.fingerprint, publicKeyring: await readFile(join(home, 'pub.gpg'))}
  })
}

/** An armored detached OpenPGP signature of data by the release key, made in a temporary GNUPGHOME that is removed afterwards. */
export async function signDetached(key: ReleaseKeyOptions, data: Buffer): Promise<Buffer> {
  return withTempGnupgHome(async (home) => signIn(home, key, await importKey(home, key), data))
}

/**
 * Checks a detached OpenPGP signature with gpgv against a keyring made from the given public key
 * (armored or binary), in a temporary directory: good, and which key made it (VALIDSIG's fingerprint).
 */
export async function gpgvVerify(publicKey: Buffer, signature: Buffer, data: Buffer): Promise<{good: boolean; fingerprint?: string; output: string}> {
  return withTempGnupgHome(async (home) => {
    const keyring = join(home, 'keyring.gpg')
    if (publicKey.subarray(0, 64).toString('latin1').includes('-----BEGIN PGP')) {
      await writeFile(join(home, 'key.asc'), publicKey)
      const r = await run('gpg', [...gpgBase(home), '--dearmor', '--output', keyring, join(home, 'key.asc')], {reject: false})
      if (r.exitCode !== 0) return {good: false, output: r.stderr}
    } else await writeFile(keyring, publicKey)
    await writeFile(join(home, 'sig'), signature)
    await writeFile(join(home, 'data'), data)
    const r = await run('gpgv', ['--homedir', home, '--status-fd', '1', '--keyring', keyring, join(home, 'sig'), join(home, 'data')], {reject: false})
    const valid = /^\[GNUPG:\] VALIDSIG ([0-9A-F]{40})/m.exec(r.stdout)
    return {good: r.exitCode === 0 && valid !== null, fingerprint: valid?.[1], output: `${r.stdout}\n${r.stderr}`}
  })
}

/** A key a user gave to `verify --key`: which kind it is, by its text. */
export function publicKeyKind(key: Buffer, file: string): 'openpgp' | 'pem' {
  const head = key.subarray(0, 200).toString('latin1')
  if (head.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----')) return 'openpgp'
  if (head.includes('-----BEGIN PUBLIC KEY-----')) return 'pem'
  // a binary OpenPGP public key packet: old-format tag 6 (0x98/0x99) or new-format tag 6 (0xc6)
  if (key.length > 0 && (key[0] === 0x98 || key[0] === 0x99 || key[0] === 0xc6)) return 'openpgp'
  if (head.includes('PRIVATE KEY')) throw new InputError(`${file} is a private key: verify takes the public key`, {hint: 'openssl pkey -in key.pem -pubout > key.pub.pem'})
  throw new InputError(`${file} is neither an OpenPGP public key nor a PEM public key (-----BEGIN PUBLIC KEY-----)`, {
    hint: 'give the release key as gpg --armor --export <fingerprint> writes it, and the attestation key as openssl pkey -pubout writes it',
  })
}
