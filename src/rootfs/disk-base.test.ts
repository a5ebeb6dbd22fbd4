import {execFileSync} from 'node:child_process'
import {chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {InputError} from '../errors.js'
import {diskToRootfs} from './disk-base.js'

/**
 * Issue #29: every tool that reads a base's bytes runs in the sandbox. A small GPT disk with an
 * ext4 root, made here (sfdisk, mke2fs -d), is read by diskToRootfs with a `bwrap` first on PATH
 * that logs each command line and runs the real one: sfdisk and debugfs must appear in that log,
 * reading the disk under its fixed inside name. A partition table that points past the end of the
 * file is refused before any reader is sent there.
 */

const dir = mkdtempSync(join(tmpdir(), 'cvm-disk-base-'))
const log = join(dir, 'bwrap.log')
const SECRET = `disk-base-${process.pid}-${Date.now()}\n`
const oldPath = process.env.PATH
const PART_START = 2048
const PART_SECTORS = 12288

beforeAll(() => {
  const bin = join(dir, 'bin')
  mkdirSync(bin)
  writeFileSync(join(bin, 'bwrap'), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${log}'\nexec /usr/bin/bwrap "$@"\n`)
  chmodSync(join(bin, 'bwrap'), 0o755)
  process.env.PATH = `${bin}:${oldPath}`
  mkdirSync(join(dir, 'tree', 'etc'), {recursive: true})
  writeFileSync(join(dir, 'tree', 'etc', 'secret'), SECRET)
})
afterAll(() => {
  process.env.PATH = oldPath
  rmSync(dir, {recursive: true, force: true})
})

/** an 8 MiB disk (GPT or MBR) whose one Linux partition (1 MiB on) holds a 4 MiB ext4 with /etc/secret */
function disk(name: string, label: 'gpt' | 'dos'): string {
  const file = join(dir, name)
  writeFileSync(file, '')
  truncateSync(file, 8 * 1024 * 1024)
  const type = label === 'gpt' ? '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709' : '83'
  execFileSync('sfdisk', ['-q', file], {input: `label: ${label}\nstart=${PART_START}, size=${PART_SECTORS}, type=${type}\n`, stdio: ['pipe', 'pipe', 'pipe']})
  execFileSync('mke2fs', ['-t', 'ext4', '-q', '-F', '-b', '1024', '-d', join(dir, 'tree'), '-E', `offset=${PART_START * 512}`, file, '4096'], {stdio: 'pipe'})
  return file
}

async function read(disk: string, name: string): Promise<{output: string; error?: unknown}> {
  const work = join(dir, `${name}-work`)
  mkdirSync(work, {recursive: true})
  const output = join(dir, `${name}.tar`)
  const error = await diskToRootfs(disk, 'raw', output, work, {progress: () => {}}).then(() => undefined, (e: unknown) => e)
  return {output, error}
}

describe('a disk base read by confined tools', () => {
  it('sfdisk and debugfs read the disk inside the sandbox, under a fixed name', async () => {
    const gpt = disk('good.raw', 'gpt')
    writeFileSync(log, '')
    const {output, error} = await read(gpt, 'good')
    expect(error).toBeUndefined()
    expect(execFileSync('tar', ['-xOf', output, 'etc/secret'], {encoding: 'utf8'})).toBe(SECRET)
    const lines = readFileSync(log, 'utf8').split('\n')
    const sfdisk = lines.filter((l) => / -- sfdisk /.test(l))
    const debugfs = lines.filter((l) => / -- debugfs /.test(l))
    expect(sfdisk).toHaveLength(1)
    expect(sfdisk[0]).toMatch(new RegExp(`--ro-bind ${gpt} /in/disk --chdir / -- sfdisk --json /in/disk$`))
    expect(debugfs.length).toBeGreaterThan(0)
    for (const l of debugfs) expect(l).toMatch(new RegExp(`--ro-bind ${gpt} /in/disk --bind \\S+ /work .*-- debugfs -f /work/debugfs.cmds /in/disk\\?offset=${PART_START * 512}$`))
  })

  it('a partition that runs past the end of the image is refused, naming it', async () => {
    // the filesystem (1 to 5 MiB) is still whole; the MBR says the partition runs to 7 MiB (sfdisk reports an MBR entry as it is)
    const mbr = disk('short.raw', 'dos')
    truncateSync(mbr, 6 * 1024 * 1024)
    const {error} = await read(mbr, 'short')
    expect(error).toBeInstanceOf(InputError)
    expect((error as InputError).exitCode).toBe(2)
    expect((error as InputError).message).toBe(`the partition table of ${join(dir, 'short-work', 'disk.raw')}: partition 1 (sectors ${PART_START} to ${PART_START + PART_SECTORS - 1}, 512-byte sectors) ends at byte ${(PART_START + PART_SECTORS) * 512}, past the end of the ${6 * 1024 * 1024}-byte disk`)
  })
})
