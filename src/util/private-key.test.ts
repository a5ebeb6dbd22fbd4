import {chmod, mkdtemp, rm, symlink, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {inputRefusal} from '../../test/helpers/refusal.js'
import {readPassphraseFile, readPrivateKeyFile} from './private-key.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cvm-private-key-'))
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

const refusal = inputRefusal

describe('readPrivateKeyFile', () => {
  it('reads a file of mode 0600 or 0400', async () => {
    const f = join(dir, 'ok.key')
    await writeFile(f, 'secret bytes', {mode: 0o600})
    expect(readPrivateKeyFile(f, {flag: '--k'}).toString()).toBe('secret bytes')
    await chmod(f, 0o400)
    expect(readPrivateKeyFile(f, {flag: '--k'}).toString()).toBe('secret bytes')
  })

  it.each([0o644, 0o640, 0o604, 0o620, 0o602, 0o610])('refuses mode %o with exit 2, the mode and the chmod, never the key', async (mode) => {
    const f = join(dir, `open-${mode.toString(8)}.key`)
    await writeFile(f, 'TOPSECRET')
    await chmod(f, mode)
    const e = refusal(() => readPrivateKeyFile(f, {flag: '--signing-key'}))
    expect(e.exitCode).toBe(2)
    expect(e.message).toBe(`--signing-key ${f} is open to group or others (mode 0${mode.toString(8)}): an unprotected private key file is refused, as OpenSSH refuses one`)
    expect(e.hint).toBe(`chmod 600 ${f}`)
    expect(e.render()).not.toContain('TOPSECRET')
  })

  it('judges the file a symlink points to', async () => {
    const f = join(dir, 'target.key')
    await writeFile(f, 'k')
    await chmod(f, 0o644)
    const link = join(dir, 'link.key')
    await symlink(f, link)
    expect(refusal(() => readPrivateKeyFile(link, {flag: '--k'})).message).toContain('mode 0644')
  })

  it('names a missing file and a directory', () => {
    expect(refusal(() => readPrivateKeyFile(join(dir, 'none'), {flag: '--k'})).message).toMatch(/^--k \S+none cannot be read: ENOENT/)
    expect(refusal(() => readPrivateKeyFile(dir, {flag: '--k'})).message).toMatch(/is not a regular file|EISDIR/)
  })
})

describe('readPassphraseFile', () => {
  it('takes the first line without its line end', async () => {
    const f = join(dir, 'pass')
    await writeFile(f, 'correct horse \r\nsecond line\n', {mode: 0o600})
    expect(readPassphraseFile(f, {flag: '--p'})).toBe('correct horse ')
  })

  it('refuses an open passphrase file and an empty first line', async () => {
    const open = join(dir, 'open-pass')
    await writeFile(open, 'sesame\n')
    await chmod(open, 0o644)
    expect(refusal(() => readPassphraseFile(open, {flag: '--p'})).hint).toBe(`chmod 600 ${open}`)
    const empty = join(dir, 'empty-pass')
    await writeFile(empty, '\nsesame\n', {mode: 0o600})
    expect(refusal(() => readPassphraseFile(empty, {flag: '--p'})).message).toContain('holds no passphrase')
  })
})
