import {chmod, copyFile, mkdtemp, readdir, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {inputRefusal} from '../../test/helpers/refusal.js'
import {run} from '../util/exec.js'
import {checkSigningPair, signPe} from './secure-boot.js'
import {EFI_STUB} from './uki.js'

/**
 * The Secure Boot key's protection (issue #29, 4): a key file open to others is refused, and a
 * passphrase-protected key (openssl genpkey -aes256) signs through a passphrase file.
 */
let work: string
let plainKey: string
let encKey: string
let cert: string
let passFile: string
const PASSPHRASE = `pp-${process.pid}-${Date.now()}`

const openssl = (args: string[]) => run('openssl', args, {cwd: work, what: 'make test keys (openssl)'})

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'cvm-sb-key-'))
  passFile = join(work, 'pass')
  await writeFile(passFile, `${PASSPHRASE}\n`, {mode: 0o600})
  encKey = join(work, 'enc.key')
  await openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-aes256', '-pass', `file:${passFile}`, '-out', encKey])
  cert = join(work, 'db.pem')
  await openssl(['req', '-new', '-x509', '-key', encKey, '-passin', `file:${passFile}`, '-out', cert, '-days', '30', '-subj', '/CN=cvm-image test encrypted db key/'])
  plainKey = join(work, 'plain.key')
  await openssl(['pkey', '-in', encKey, '-passin', `file:${passFile}`, '-out', plainKey])
}, 60_000)

afterAll(async () => {
  if (work) await rm(work, {recursive: true, force: true})
})

const refusal = inputRefusal

describe('checkSigningPair: the key file', () => {
  it('refuses a key readable by group or others, with the chmod, before reading it as a key', async () => {
    const open = join(work, 'open.key')
    await copyFile(plainKey, open)
    await chmod(open, 0o644)
    const e = refusal(() => checkSigningPair({keyFile: open, certFile: cert}))
    expect(e.exitCode).toBe(2)
    expect(e.message).toContain(`--signing-key ${open} is open to group or others (mode 0644)`)
    expect(e.hint).toBe(`chmod 600 ${open}`)
    await chmod(open, 0o600)
    expect(checkSigningPair({keyFile: open, certFile: cert}).subject).toContain('encrypted db key')
  })

  it('opens an encrypted key with its passphrase file; without it, or with a wrong one, refuses it naming the flag, never the passphrase', async () => {
    expect(checkSigningPair({keyFile: encKey, certFile: cert, passphraseFile: passFile}).subject).toContain('encrypted db key')
    const none = refusal(() => checkSigningPair({keyFile: encKey, certFile: cert}))
    expect(none.message).toBe(`--signing-key ${encKey} is encrypted`)
    expect(none.hint).toContain('--signing-key-passphrase-file')
    const wrongFile = join(work, 'wrong-pass')
    await writeFile(wrongFile, 'not-the-passphrase\n', {mode: 0o600})
    const wrong = refusal(() => checkSigningPair({keyFile: encKey, certFile: cert, passphraseFile: wrongFile}))
    expect(wrong.message).toBe(`--signing-key ${encKey} cannot be opened with the passphrase of --signing-key-passphrase-file`)
    expect(wrong.render()).not.toContain('not-the-passphrase')
  })

  it('refuses a passphrase file readable by others', async () => {
    const open = join(work, 'open-pass')
    await writeFile(open, `${PASSPHRASE}\n`)
    await chmod(open, 0o640)
    expect(refusal(() => checkSigningPair({keyFile: encKey, certFile: cert, passphraseFile: open})).hint).toBe(`chmod 600 ${open}`)
  })
})

describe('signPe with an encrypted key', () => {
  it('signs through the passphrase file (osslsigncode reads it on stdin): sbverify accepts the UKI, the passphrase is in no argument and no decrypted key is written', async () => {
    const dir = await mkdtemp(join(work, 'sign-'))
    const pe = join(dir, 'stub.efi')
    await copyFile(EFI_STUB, pe)
    const log = join(work, 'sign.log')
    await signPe(pe, {keyFile: encKey, certFile: cert, passphraseFile: passFile}, 1700000000, log)
    const ok = await run('sbverify', ['--cert', cert, pe], {reject: false})
    expect(ok.exitCode, ok.stdout + ok.stderr).toBe(0)
    expect(await readdir(dir)).toEqual(['stub.efi'])
    expect(await readFile(log, 'utf8')).not.toContain(PASSPHRASE)
  })

  it('fails without the passphrase (no prompt that would wait for ever)', async () => {
    const pe = join(work, 'nopass.efi')
    await copyFile(EFI_STUB, pe)
    await expect(signPe(pe, {keyFile: encKey, certFile: cert}, 1700000000)).rejects.toThrow(/osslsigncode/)
  }, 30_000)

  it('refuses a key file open to others', async () => {
    const pe = join(work, 'open.efi')
    await copyFile(EFI_STUB, pe)
    const open = join(work, 'open-sign.key')
    await copyFile(encKey, open)
    await chmod(open, 0o604)
    await expect(signPe(pe, {keyFile: open, certFile: cert, passphraseFile: passFile}, 1700000000)).rejects.toThrow(/is open to group or others \(mode 0604\)/)
  })
})
