import {createPublicKey} from 'node:crypto'
import {chmod, copyFile, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {InputError} from '../errors.js'
import {run} from '../util/exec.js'
import {loadAttestationSigner, verifyEnvelope} from './dsse.js'

let dir: string
let encKey: string
let pass: string
const PASSPHRASE = `att-${process.pid}-${Date.now()}`

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cvm-dsse-key-'))
  pass = join(dir, 'pass')
  await writeFile(pass, `${PASSPHRASE}\n`, {mode: 0o600})
  encKey = join(dir, 'att.key')
  await run('openssl', ['genpkey', '-algorithm', 'ed25519', '-aes256', '-pass', `file:${pass}`, '-out', encKey])
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

describe('loadAttestationSigner: the key file (issue #29, 4)', () => {
  it('signs with a passphrase-protected Ed25519 key (openssl genpkey -aes256) through a passphrase file; the envelope verifies with its public key', async () => {
    const signer = await loadAttestationSigner(encKey, {passphraseFile: pass})
    const pub = (await run('openssl', ['pkey', '-in', encKey, '-passin', `file:${pass}`, '-pubout'])).stdout
    const v = verifyEnvelope(signer.envelope({hello: 'world'}), createPublicKey(pub))
    expect(v).toEqual({ok: true, statement: {hello: 'world'}})
  })

  it('refuses the encrypted key without its passphrase file, naming the flag, and with a wrong one', async () => {
    const e = await loadAttestationSigner(encKey).catch((x) => x)
    expect(e).toBeInstanceOf(InputError)
    expect(e.message).toBe(`--attestation-key ${encKey} is encrypted`)
    expect(e.hint).toContain('--attestation-key-passphrase-file')
    const wrong = join(dir, 'wrong')
    await writeFile(wrong, 'nope\n', {mode: 0o600})
    expect((await loadAttestationSigner(encKey, {passphraseFile: wrong}).catch((x) => x)).message).toContain('cannot be opened with the passphrase')
  })

  it('refuses a key file or a passphrase file open to group or others, with the chmod', async () => {
    const open = join(dir, 'open.key')
    await copyFile(encKey, open)
    await chmod(open, 0o644)
    const e = await loadAttestationSigner(open, {passphraseFile: pass}).catch((x) => x)
    expect(e).toBeInstanceOf(InputError)
    expect(e.exitCode).toBe(2)
    expect(e.hint).toBe(`chmod 600 ${open}`)
    const openPass = join(dir, 'open-pass')
    await writeFile(openPass, await readFile(pass))
    await chmod(openPass, 0o640)
    expect((await loadAttestationSigner(encKey, {passphraseFile: openPass}).catch((x) => x)).hint).toBe(`chmod 600 ${openPass}`)
  })
})
