import {mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {StageError} from '../errors.js'
import {readDumped} from './debugfs.js'

const dir = mkdtempSync(join(tmpdir(), 'cvm-dumped-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))

describe("what debugfs leaves in its work dir is read as itself, never through a link (issue #29)", () => {
  it('reads a dumped file, and refuses a symlink to a host file and a directory in its place', async () => {
    const secret = join(dir, 'host-secret')
    writeFileSync(secret, 'a host file the image must never carry')
    writeFileSync(join(dir, '12'), 'dumped bytes')
    symlinkSync(secret, join(dir, '13'))
    mkdirSync(join(dir, '14'))
    expect((await readDumped(join(dir, '12'), 'file "/etc/x"')).toString()).toBe('dumped bytes')
    await expect(readDumped(join(dir, '13'), 'file "/etc/y"')).rejects.toThrow(/file "\/etc\/y": debugfs left no file to read at .*13 \(a symlink, refused\)/)
    await expect(readDumped(join(dir, '14'), 'file "/etc/z"')).rejects.toThrow(StageError)
  })
})
