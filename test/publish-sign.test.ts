import {execFileSync} from 'node:child_process'
import {createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign as nodeSign, verify as nodeVerify} from 'node:crypto'
import {existsSync} from 'node:fs'
import {chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it, vi} from 'vitest'

import type {BuildRecord} from '../src/pipeline/build-record.js'
import {publish, type PublishResult, type VerifyResult} from '../src/publish/index.js'
import type {Manifest} from '../src/publish/manifest.js'
import {inspectReleaseKey} from '../src/publish/sign.js'
import {run} from '../src/util/exec.js'
import {makeBuildRecordFixture} from './helpers/build-record-fixture.js'
import {cli} from './helpers/cli.js'
import {dearmor, filesHolding, keyNeedles} from './helpers/key-leak.js'
import {repoRoot} from './helpers/paths.js'
import {startSshd, type TestSshd} from './helpers/sshd.js'

/**
 * Signed releases: SHA256SUMS.gpg is checked here with gpgv itself, and the DSSE envelopes with a check
 * written in this file from the DSSE spec (node's crypto directly), never only with the code that signed.
 */

// publish hashes and copies a 1 GiB sparse disk: on a loaded 2-core machine that can take more than a minute
vi.setConfig({testTimeout: 240_000})

const MARKER = 'cvm-image: 6.1 series marker: nvme min_align_mask backport applied'

let work: string
let keys: string
let cacheDir: string
let record: BuildRecord
/** the test's OpenPGP release key and a second one, each in its own GNUPGHOME */
const pgp = {home: '', secret: '', publicAsc: '', keyring: '', fingerprint: ''}
const otherPgp = {home: '', secret: '', publicAsc: '', keyring: '', fingerprint: ''}
/** the test's Ed25519 attestation key pair (PEM files) and another one */
let dssePrivate: string
let dssePublic: string
let dsseKeyId: string
let otherDssePrivatePem: string

const gpg = (home: string, args: string[], input?: string) => execFileSync('gpg', ['--homedir', home, '--batch', '--no-tty', ...args], {input, stdio: ['pipe', 'pipe', 'pipe']})

async function makePgpKey(into: typeof pgp, name: string): Promise<void> {
  into.home = await mkdtemp(join(tmpdir(), 'cvm-sign-test-gpg-'))
  gpg(into.home, ['--pinentry-mode', 'loopback', '--passphrase', '', '--quick-gen-key', `${name} <${name}@example.org>`, 'ed25519', 'sign', 'never'])
  const colons = gpg(into.home, ['--with-colons', '--list-secret-keys']).toString()
  into.fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(colons)![1]
  into.secret = join(keys, `${name}.sec.asc`)
  into.publicAsc = join(keys, `${name}.pub.asc`)
  into.keyring = join(keys, `${name}.pub.gpg`)
  await writeFile(into.secret, gpg(into.home, ['--pinentry-mode', 'loopback', '--passphrase', '', '--armor', '--export-secret-keys', into.fingerprint]), {mode: 0o600})
  await writeFile(into.publicAsc, gpg(into.home, ['--armor', '--export', into.fingerprint]))
  await writeFile(into.keyring, gpg(into.home, ['--export', into.fingerprint]))
}

/** gpgv, the tool a consumer runs: exit 0 and a VALIDSIG of fingerprint, or why not */
function gpgv(keyring: string, dir: string): {ok: boolean; output: string} {
  try {
    const out = execFileSync('gpgv', ['--status-fd', '1', '--keyring', keyring, 'SHA256SUMS.gpg', 'SHA256SUMS'], {cwd: dir, stdio: ['ignore', 'pipe', 'pipe']}).toString()
    return {ok: true, output: out}
  } catch (e) {
    return {ok: false, output: String((e as {stderr?: Buffer}).stderr ?? e)}
  }
}

/**
 * A DSSE check written from the spec, apart from the signer: the payload type is in-toto's, and a
 * signature verifies over PAE = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body. Returns the statement.
 */
function dsseCheck(envelope: Buffer, publicKeyPem: string): {ok: boolean; statement?: Record<string, any>; keyids: string[]} {
  const env = JSON.parse(envelope.toString()) as {payloadType: string; payload: string; signatures: {keyid: string; sig: string}[]}
  const body = Buffer.from(env.payload, 'base64')
  const type = Buffer.from(env.payloadType)
  const signed = Buffer.concat([Buffer.from('DSSEv1 '), Buffer.from(String(type.length)), Buffer.from(' '), type, Buffer.from(' '), Buffer.from(String(body.length)), Buffer.from(' '), body])
  const key = createPublicKey(publicKeyPem)
  const ok = env.payloadType === 'application/vnd.in-toto+json' && env.signatures.some((s) => nodeVerify(null, signed, key, Buffer.from(s.sig, 'base64')))
  return {ok, statement: ok ? JSON.parse(body.toString()) : undefined, keyids: env.signatures.map((s) => s.keyid)}
}

/** every file under dir, recursively */
async function allFiles(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return []
  const out: string[] = []
  for (const e of await readdir(dir, {withFileTypes: true, recursive: true})) if (e.isFile()) out.push(join(e.parentPath ?? (e as unknown as {path: string}).path, e.name))
  return out
}

beforeAll(async () => {
  if (!existsSync(join(repoRoot, 'dist', 'commands', 'verify.js'))) throw new Error('dist/ is not built: run scripts/test (or npx tsc -p .) first')
  work = await mkdtemp(join(tmpdir(), 'cvm-sign-'))
  keys = join(work, 'keys')
  await mkdir(keys)
  await makePgpKey(pgp, 'release')
  await makePgpKey(otherPgp, 'other')
  const pair = generateKeyPairSync('ed25519')
  dssePrivate = join(keys, 'attestation.pem')
  dssePublic = join(keys, 'attestation.pub.pem')
  await writeFile(dssePrivate, pair.privateKey.export({type: 'pkcs8', format: 'pem'}), {mode: 0o600})
  await writeFile(dssePublic, pair.publicKey.export({type: 'spki', format: 'pem'}))
  dsseKeyId = createHash('sha256').update(pair.publicKey.export({type: 'spki', format: 'der'})).digest('hex')
  otherDssePrivatePem = generateKeyPairSync('ed25519').privateKey.export({type: 'pkcs8', format: 'pem'}).toString()
  cacheDir = join(work, 'cache')
  record = (await makeBuildRecordFixture(cacheDir, {recipeId: 'signed', seed: 'sign', formats: ['raw'], marker: MARKER})).record
})

afterAll(async () => {
  for (const h of [pgp.home, otherPgp.home]) if (h) execFileSync('gpgconf', ['--homedir', h, '--kill', 'all'])
  for (const d of [work, pgp.home, otherPgp.home]) if (d) await rm(d, {recursive: true, force: true})
})

describe('a release published with a release key and an attestation key', () => {
  let r: PublishResult
  let dir: string
  let tmp: string
  const spec = () => `dir:${join(work, 'out')}/${record.recipeId}/${r.version}`

  beforeAll(async () => {
    // through the binary, with TMPDIR of its own: the temporary GNUPGHOME must be gone afterwards
    tmp = join(work, 'tmp')
    await mkdir(tmp)
    const res = await cli(
      ['publish', join(cacheDir, 'builds', 'signed.json'), '--cache-dir', cacheDir, '--publish', `dir:${join(work, 'out')}`, '--release-key', pgp.secret, '--attestation-key', dssePrivate, '--json'],
      {env: {TMPDIR: tmp}, timeoutMs: 230_000},
    )
    expect(res.code, res.stderr).toBe(0)
    r = JSON.parse(res.stdout) as PublishResult
    dir = join(work, 'out', record.recipeId, r.version)
  })

  it('adds SHA256SUMS.gpg, which gpgv accepts with the release key, and SHA256SUMS lists every other file', async () => {
    expect(r.files.map((f) => f.name)).toEqual(['disk.raw', 'provenance.intoto.json', 'validation.intoto.json', 'SHA256SUMS', 'SHA256SUMS.gpg', 'manifest.json'])
    const v = gpgv(pgp.keyring, dir)
    expect(v.ok, v.output).toBe(true)
    expect(v.output).toContain(`VALIDSIG ${pgp.fingerprint}`)
    expect(gpgv(otherPgp.keyring, dir).ok).toBe(false)
    const sums = await readFile(join(dir, 'SHA256SUMS'), 'utf8')
    expect(sums.split('\n').filter(Boolean).map((l) => l.slice(66)).sort()).toEqual(['disk.raw', 'manifest.json', 'provenance.intoto.json', 'validation.intoto.json'])
    await run('sha256sum', ['--strict', '-c', 'SHA256SUMS'], {cwd: dir, what: 'check SHA256SUMS'})
    const m = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest
    expect(m.signing).toEqual({
      status: 'signed',
      checksums: {status: 'signed', file: 'SHA256SUMS.gpg', format: 'openpgp', fingerprint: pgp.fingerprint},
      attestations: {status: 'signed', format: 'dsse', payloadType: 'application/vnd.in-toto+json', algorithm: 'ed25519', keyid: dsseKeyId, files: ['provenance.intoto.json', 'validation.intoto.json']},
    })
  })

  it('provenance and validation statements are DSSE envelopes a separate check accepts; the validation statement binds the disk to its validation', async () => {
    const m = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest
    const prov = dsseCheck(await readFile(join(dir, 'provenance.intoto.json')), await readFile(dssePublic, 'utf8'))
    expect(prov.ok).toBe(true)
    expect(prov.keyids).toEqual([dsseKeyId])
    expect(prov.statement!._type).toBe('https://in-toto.io/Statement/v1')
    expect(prov.statement!.predicateType).toBe('https://slsa.dev/provenance/v1')
    expect(prov.statement!.subject).toEqual(m.artifacts.map((a) => ({name: a.name, digest: {sha256: a.sha256}})))

    const val = dsseCheck(await readFile(join(dir, 'validation.intoto.json')), await readFile(dssePublic, 'utf8'))
    expect(val.ok).toBe(true)
    const st = val.statement!
    expect(st.subject).toEqual([{name: 'disk.raw', digest: {sha256: m.disk.sha256}}])
    expect(st.predicateType).toBe('urn:cvm-image:predicate:validation:v1')
    expect(st.predicate).toMatchObject({status: 'passed', allowedUnvalidated: false, modes: ['emulated'], hostKind: 'local', when: '2026-11-26T08:00:00.000Z'})
    expect(st.predicate.marker).toEqual([{mode: 'emulated', verdict: 'pass', line: MARKER}])
    expect(st.predicate.checks.map((c: {mode: string; name: string; verdict: string}) => `${c.mode}/${c.name}:${c.verdict}`)).toEqual([
      'emulated/booted-kernel:pass',
      'emulated/nvme-bounce-integrity:pass',
      'sev/memory-encryption:skip',
      'emulated/marker:pass',
    ])
    expect(m.validationStatement!.sha256).toBe(createHash('sha256').update(await readFile(join(dir, 'validation.intoto.json'))).digest('hex'))
    // and another key's signature is refused by the same check
    const other = createPublicKey(otherDssePrivatePem).export({type: 'spki', format: 'pem'}).toString()
    expect(dsseCheck(await readFile(join(dir, 'validation.intoto.json')), other).ok).toBe(false)
  })

  it('the keys are nowhere but where the user keeps them: not in the release, the cache or a temp dir left behind', async () => {
    // the armoured lines and the raw secret bytes (a binary or DER copy): test/helpers/key-leak.ts
    const needles = [...keyNeedles(await readFile(pgp.secret, 'utf8'), await readFile(pgp.keyring)), ...keyNeedles(await readFile(dssePrivate, 'utf8'))]
    expect(needles.length).toBeGreaterThan(2)
    const patterns = join(work, 'secret-needles')
    expect((await allFiles(dir)).length).toBeGreaterThan(5)
    // grep -F over every file (GiB disks too), byte-wise
    expect(await filesHolding([dir, cacheDir, tmp], needles, patterns)).toEqual([])
    // and the same search does find the key where the user keeps it, armoured and raw
    const raw = join(work, 'raw-copy')
    await mkdir(raw)
    await writeFile(join(raw, 'release.gpg'), dearmor(await readFile(pgp.secret, 'utf8')))
    await writeFile(join(raw, 'attestation.der'), createPrivateKey(await readFile(dssePrivate)).export({type: 'pkcs8', format: 'der'}))
    expect((await filesHolding([pgp.secret, dssePrivate, raw], needles, patterns)).sort()).toEqual([pgp.secret, dssePrivate, join(raw, 'attestation.der'), join(raw, 'release.gpg')].sort())
    await rm(raw, {recursive: true})
    expect((await readdir(tmp)).filter((n) => n.startsWith('cvm-gpg-'))).toEqual([])
  })

  it('verify --key with both public keys: exit 0, every signature ok', async () => {
    const v = await cli(['verify', spec(), '--key', pgp.publicAsc, '--key', dssePublic, '--json'])
    expect(v.code, v.stderr).toBe(0)
    const res = JSON.parse(v.stdout) as VerifyResult
    expect(res.intact).toBe(true)
    expect(res.signatures.map((s) => [s.name, s.kind, s.verdict])).toEqual([
      ['SHA256SUMS.gpg', 'openpgp', 'ok'],
      ['provenance.intoto.json', 'dsse', 'ok'],
      ['validation.intoto.json', 'dsse', 'ok'],
    ])
    expect(res.signatures[0].detail).toContain(pgp.fingerprint)
    // a binary keyring works too
    expect((await cli(['verify', spec(), '--key', pgp.keyring])).code).toBe(0)
  })

  it('a re-publish with the same keys keeps the published signature and uploads nothing', async () => {
    const before = await readFile(join(dir, 'SHA256SUMS.gpg'))
    await new Promise((res) => setTimeout(res, 1100)) // a new signature now has another creation time
    const again = await publish(record, `dir:${join(work, 'out')}`, {stagingDir: join(cacheDir, 'publish'), releaseKey: {keyFile: pgp.secret}, attestationKey: {keyFile: dssePrivate}})
    expect(again.unchanged).toBe(true)
    expect(again.bytesUploaded).toBe(0)
    expect(await readFile(join(dir, 'SHA256SUMS.gpg'))).toEqual(before)
  })

  it('one byte changed in SHA256SUMS: gpgv refuses it, and verify exits 4 naming SHA256SUMS.gpg', async () => {
    const sums = join(dir, 'SHA256SUMS')
    const good = await readFile(sums)
    const bad = Buffer.from(good)
    bad[3] = bad[3] === 0x30 ? 0x31 : 0x30
    await writeFile(sums, bad)
    try {
      expect(gpgv(pgp.keyring, dir).ok).toBe(false)
      const v = await cli(['verify', spec(), '--key', pgp.publicAsc])
      expect(v.code, v.stderr).toBe(4)
      expect(v.stderr).toMatch(/the signature of SHA256SUMS\.gpg is bad or missing/)
      expect(v.stderr).toMatch(/SHA256SUMS\.gpg: signature bad: gpgv finds no good signature of SHA256SUMS/)
    } finally {
      await writeFile(sums, good)
    }
  })

  it('a SHA256SUMS.gpg by another key over the very same SHA256SUMS: only the signature is wrong, and verify exits 4 naming it', async () => {
    const sig = join(dir, 'SHA256SUMS.gpg')
    const good = await readFile(sig)
    gpg(otherPgp.home, ['--pinentry-mode', 'loopback', '--passphrase', '', '--yes', '--armor', '--detach-sign', '--output', sig, join(dir, 'SHA256SUMS')])
    try {
      const v = await cli(['verify', spec(), '--key', pgp.publicAsc])
      expect(v.code, v.stderr).toBe(4)
      expect(v.stderr).toMatch(/does not verify: the signature of SHA256SUMS\.gpg is bad or missing$/m)
      // without a key, the sums alone still verify: the signature is what --key adds
      expect((await cli(['verify', spec()])).code).toBe(0)
    } finally {
      await writeFile(sig, good)
    }
  })

  it('one byte changed in an envelope payload: the separate check refuses it, and verify exits 4 naming the envelope', async () => {
    const file = join(dir, 'validation.intoto.json')
    const good = await readFile(file)
    const env = JSON.parse(good.toString())
    const body = Buffer.from(env.payload, 'base64')
    const at = body.indexOf(Buffer.from('"passed"')) + 1
    body[at] = 'f'.charCodeAt(0) // "passed" -> "fassed"
    env.payload = body.toString('base64')
    await writeFile(file, JSON.stringify(env, null, 2) + '\n')
    try {
      expect(dsseCheck(await readFile(file), await readFile(dssePublic, 'utf8')).ok).toBe(false)
      const v = await cli(['verify', spec(), '--key', dssePublic])
      expect(v.code, v.stderr).toBe(4)
      expect(v.stderr).toMatch(/the signature of validation\.intoto\.json is bad or missing/)
      expect(v.stderr).toMatch(/validation\.intoto\.json: signature bad: .*none of its 1 signature\(s\) verifies/)
    } finally {
      await writeFile(file, good)
    }
    expect((await cli(['verify', spec(), '--key', dssePublic, '--key', pgp.publicAsc])).code).toBe(0)
  })

  it('an envelope re-signed by another key is refused, naming it', async () => {
    const file = join(dir, 'provenance.intoto.json')
    const good = await readFile(file)
    const env = JSON.parse(good.toString())
    const body = Buffer.from(env.payload, 'base64')
    const type = Buffer.from(env.payloadType)
    const paeBytes = Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${body.length} `), body])
    env.signatures = [{keyid: 'other', sig: nodeSign(null, paeBytes, otherDssePrivatePem).toString('base64')}]
    await writeFile(file, JSON.stringify(env, null, 2) + '\n')
    try {
      const v = await cli(['verify', spec(), '--key', dssePublic])
      expect(v.code).toBe(4)
      expect(v.stderr).toMatch(/the signature of provenance\.intoto\.json is bad or missing/)
    } finally {
      await writeFile(file, good)
    }
  })
})

describe('a signed release on an SFTP target', () => {
  let sshd: TestSshd
  beforeAll(async () => {
    sshd = await startSshd()
  })
  afterAll(async () => {
    await sshd?.stop()
  })

  it('is published, verified with --key where it lies, and re-published unchanged', async () => {
    const root = join(work, 'sftp-target')
    const target = `sftp://${sshd.user}@127.0.0.1:${sshd.port}${root}`
    const ssh = {hostKey: sshd.hostKeyFingerprint, privateKey: sshd.userKeyPath}
    const opts = {stagingDir: join(cacheDir, 'publish'), ssh, releaseKey: {keyFile: pgp.secret}, attestationKey: {keyFile: dssePrivate}}
    const r = await publish(record, target, opts)
    expect(r.files.map((f) => [f.name, f.action])).toContainEqual(['SHA256SUMS.gpg', 'uploaded'])
    const dir = join(root, record.recipeId, r.version)
    expect(gpgv(pgp.keyring, dir).ok).toBe(true)
    const flags = ['--publish-host-key', sshd.hostKeyFingerprint, '--publish-identity', sshd.userKeyPath, '--key', pgp.publicAsc, '--key', dssePublic]
    const v = await cli(['verify', `${target}/${record.recipeId}/${r.version}`, ...flags])
    expect(v.code, v.stderr).toBe(0)
    await new Promise((res) => setTimeout(res, 1100))
    const again = await publish(record, target, opts)
    expect(again.unchanged).toBe(true)
  })
})

describe('without keys', () => {
  it('publish works as before, the manifest says unsigned, and verify --key exits 4 naming what is not signed', async () => {
    const fx = await makeBuildRecordFixture(join(work, 'cache-unsigned'), {recipeId: 'unsigned', seed: 'sign', formats: ['raw']})
    const r = await publish(fx.record, `dir:${join(work, 'out')}`, {stagingDir: join(work, 'cache-unsigned', 'publish')})
    expect(r.files.map((f) => f.name)).toEqual(['disk.raw', 'provenance.intoto.json', 'SHA256SUMS', 'manifest.json'])
    expect(r.manifest.signing).toEqual({status: 'unsigned', checksums: {status: 'unsigned'}, attestations: {status: 'unsigned'}})
    const spec = `dir:${join(work, 'out', 'unsigned', r.version)}`
    expect((await cli(['verify', spec])).code).toBe(0)
    const v = await cli(['verify', spec, '--key', pgp.publicAsc, '--key', dssePublic])
    expect(v.code).toBe(4)
    expect(v.stderr).toContain('the signature of SHA256SUMS.gpg, provenance.intoto.json, validation.intoto.json is bad or missing')
    expect(v.stderr).toContain('SHA256SUMS.gpg: signature missing')
    expect(v.stderr).toMatch(/provenance\.intoto\.json: signature bad: .*attestation\.pub\.pem: not a DSSE envelope .*it is unsigned/)
  })

  it('refuses keys it cannot use before any work (exit 2): a P-256 attestation key, a public key given as the release key', async () => {
    const p256 = join(keys, 'p256.pem')
    await writeFile(p256, generateKeyPairSync('ec', {namedCurve: 'P-256'}).privateKey.export({type: 'pkcs8', format: 'pem'}), {mode: 0o600})
    const a = await cli(['publish', join(cacheDir, 'builds', 'signed.json'), '--cache-dir', cacheDir, '--publish', `dir:${join(work, 'never')}`, '--attestation-key', p256])
    expect(a.code).toBe(2)
    expect(a.stderr).toContain('is a ec key; DSSE envelopes are signed with Ed25519 here')
    const copy = join(keys, 'public-as-secret.asc')
    await copyFile(pgp.publicAsc, copy)
    await chmod(copy, 0o600)
    const b = await cli(['publish', join(cacheDir, 'builds', 'signed.json'), '--cache-dir', cacheDir, '--publish', `dir:${join(work, 'never')}`, '--release-key', copy])
    expect(b.code).toBe(2)
    expect(b.stderr).toContain('holds no OpenPGP secret key gpg could import')
    // a key with a passphrase: refused without it (before any work), used with it
    const home = await mkdtemp(join(tmpdir(), 'cvm-sign-test-gpg-'))
    try {
      gpg(home, ['--pinentry-mode', 'loopback', '--passphrase', 'sesame', '--quick-gen-key', 'protected <protected@example.org>', 'ed25519', 'sign', 'never'])
      const protectedKey = join(keys, 'protected.sec.asc')
      await writeFile(protectedKey, gpg(home, ['--pinentry-mode', 'loopback', '--passphrase', 'sesame', '--armor', '--export-secret-keys']), {mode: 0o600})
      const c = await cli(['publish', join(cacheDir, 'builds', 'signed.json'), '--cache-dir', cacheDir, '--publish', `dir:${join(work, 'never')}`, '--release-key', protectedKey])
      expect(c.code).toBe(2)
      expect(c.stderr).toContain('needs --release-key-passphrase-file')
      const passFile = join(keys, 'passphrase')
      await writeFile(passFile, 'sesame\n', {mode: 0o600})
      const info = await inspectReleaseKey({keyFile: protectedKey, passphraseFile: passFile})
      expect(info.fingerprint).toMatch(/^[0-9A-F]{40}$/)
    } finally {
      execFileSync('gpgconf', ['--homedir', home, '--kill', 'all'])
      await rm(home, {recursive: true, force: true})
    }
    expect(existsSync(join(work, 'never'))).toBe(false)
  })
})
