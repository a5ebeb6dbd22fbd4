import {execFileSync} from 'node:child_process'
import {generateKeyPairSync} from 'node:crypto'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {dearmor, filesHolding, keyNeedles, rawNeedles} from './key-leak.js'

/** The leak search of test/publish-sign.test.ts (issue #29, 4): it must find a key's raw bytes, not only its armoured text. */
let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cvm-key-leak-'))
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

describe('the key leak search', () => {
  it('rawNeedles: newline-free runs, none longer than 64 or shorter than 16 bytes', () => {
    const bin = Buffer.concat([Buffer.alloc(100, 1), Buffer.from('\n'), Buffer.alloc(10, 2), Buffer.from('\n'), Buffer.alloc(20, 3)])
    expect(rawNeedles(bin).map((n) => n.length)).toEqual([64, 36, 20])
  })

  it('finds a PEM key raw (its DER, and its bare private scalar inside a binary file) as well as armoured; not a file without it, nor its public key', async () => {
    const {privateKey, publicKey} = generateKeyPairSync('ed25519')
    const pem = privateKey.export({type: 'pkcs8', format: 'pem'}).toString()
    const root = join(dir, 'pem')
    await mkdir(root)
    const seed = Buffer.from(privateKey.export({format: 'jwk'}).d!, 'base64url')
    await writeFile(join(root, 'armoured.txt'), `x\n${pem}y\n`)
    await writeFile(join(root, 'der.bin'), Buffer.concat([Buffer.alloc(4096, 0xaa), privateKey.export({type: 'pkcs8', format: 'der'}), Buffer.alloc(4096)]))
    await writeFile(join(root, 'scalar.bin'), Buffer.concat([Buffer.alloc(1000, 7), seed, Buffer.alloc(1000, 9)]))
    await writeFile(join(root, 'public.pem'), publicKey.export({type: 'spki', format: 'pem'}))
    await writeFile(join(root, 'public.der'), publicKey.export({type: 'spki', format: 'der'}))
    await writeFile(join(root, 'other.bin'), generateKeyPairSync('ed25519').privateKey.export({type: 'pkcs8', format: 'der'}))
    const found = await filesHolding([root], keyNeedles(pem), join(dir, 'pem-patterns'))
    expect(found.sort()).toEqual(['armoured.txt', 'der.bin', 'scalar.bin'].map((f) => join(root, f)))
    // the armoured lines alone (the old search) miss the raw copies
    const armouredOnly = keyNeedles(pem).filter((n) => n.length >= 40 && /^[A-Za-z0-9+/=]+$/.test(n.toString('latin1')))
    expect(await filesHolding([root], armouredOnly, join(dir, 'pem-patterns-old'))).toEqual([join(root, 'armoured.txt')])
  })

  it('finds an OpenPGP secret key in its binary form (gpg --export-secret-keys), not the public key the release may carry', async () => {
    const home = await mkdtemp(join(tmpdir(), 'cvm-key-leak-gpg-'))
    try {
      const gpg = (args: string[]) => execFileSync('gpg', ['--homedir', home, '--batch', '--pinentry-mode', 'loopback', '--passphrase', '', ...args])
      gpg(['--quick-gen-key', 'leak <leak@example.org>', 'ed25519', 'sign', 'never'])
      const armoured = gpg(['--armor', '--export-secret-keys']).toString()
      const binary = gpg(['--export-secret-keys'])
      const pub = gpg(['--export'])
      expect(dearmor(armoured).equals(binary)).toBe(true)
      const root = join(dir, 'pgp')
      await mkdir(root)
      await writeFile(join(root, 'secret.gpg'), Buffer.concat([Buffer.alloc(512, 1), binary]))
      await writeFile(join(root, 'public.gpg'), pub)
      const needles = keyNeedles(armoured, pub)
      expect(needles.length).toBeGreaterThan(0)
      expect(await filesHolding([root], needles, join(dir, 'pgp-patterns'))).toEqual([join(root, 'secret.gpg')])
    } finally {
      execFileSync('gpgconf', ['--homedir', home, '--kill', 'all'])
      await rm(home, {recursive: true, force: true})
    }
  })
})
