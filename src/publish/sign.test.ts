import {execFileSync} from 'node:child_process'
import {chmod, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {InputError} from '../errors.js'
import {gpgvVerify, inspectReleaseKey, signDetached} from './sign.js'

let dir: string
let home: string
let secret: string
let pass: string
const PASSPHRASE = `rel-${process.pid}-${Date.now()}`
const gpg = (args: string[]) => execFileSync('gpg', ['--homedir', home, '--batch', '--pinentry-mode', 'loopback', '--passphrase', PASSPHRASE, ...args])

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cvm-release-key-'))
  home = await mkdtemp(join(tmpdir(), 'cvm-release-gpg-'))
  gpg(['--quick-gen-key', 'release <release@example.org>', 'ed25519', 'sign', 'never'])
  secret = join(dir, 'release.sec.asc')
  await writeFile(secret, gpg(['--armor', '--export-secret-keys']), {mode: 0o600})
  pass = join(dir, 'pass')
  await writeFile(pass, `${PASSPHRASE}\n`, {mode: 0o600})
})
afterAll(async () => {
  execFileSync('gpgconf', ['--homedir', home, '--kill', 'all'])
  await rm(home, {recursive: true, force: true})
  await rm(dir, {recursive: true, force: true})
})

describe('the release key file (issue #29, 4)', () => {
  it('signs with a passphrase-protected key through its passphrase file; gpgv accepts the signature', async () => {
    const info = await inspectReleaseKey({keyFile: secret, passphraseFile: pass})
    const data = Buffer.from('SHA256SUMS body\n')
    const v = await gpgvVerify(info.publicKeyring, await signDetached({keyFile: secret, passphraseFile: pass}, data), data)
    expect(v.good, v.output).toBe(true)
    expect(v.fingerprint).toBe(info.fingerprint)
  })

  it('refuses a key file, or a passphrase file, open to group or others (exit 2, the chmod)', async () => {
    await chmod(secret, 0o644)
    try {
      const e = await inspectReleaseKey({keyFile: secret, passphraseFile: pass}).catch((x) => x)
      expect(e).toBeInstanceOf(InputError)
      expect(e.message).toContain(`--release-key ${secret} is open to group or others (mode 0644)`)
      expect(e.hint).toBe(`chmod 600 ${secret}`)
    } finally {
      await chmod(secret, 0o600)
    }
    await chmod(pass, 0o604)
    try {
      const e = await inspectReleaseKey({keyFile: secret, passphraseFile: pass}).catch((x) => x)
      expect(e.message).toContain('--release-key-passphrase-file')
      expect(e.hint).toBe(`chmod 600 ${pass}`)
      expect(e.render()).not.toContain(PASSPHRASE)
    } finally {
      await chmod(pass, 0o600)
    }
  })
})
