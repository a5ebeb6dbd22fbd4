import {mkdtemp, open, readdir, readFile, rm, stat, truncate, utimes, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {gunzipSync} from 'node:zlib'

import {afterAll, beforeAll, describe, expect, it, vi} from 'vitest'

import {makeGptDisk} from '../../test/helpers/disk-fixture.js'
import {run} from '../util/exec.js'
import {sha256File} from '../util/fsx.js'
import {rawToGceTarball} from './gce.js'
import {prepareFormats} from './index.js'
import {rawToQcow2} from './qcow2.js'

// each test hashes and copies GiB-sized disks: on a loaded 2-core machine that takes more than the default minute
vi.setConfig({testTimeout: 240_000})

const GiB = 1024 ** 3
let dir: string
let disk: {path: string; sha256: string; size: number}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cvm-formats-'))
  disk = await makeGptDisk(join(dir, 'assembled.img'))
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

const octal = (b: Buffer) => parseInt(b.toString('latin1').replace(/\0.*$/s, '').trim() || '0', 8)

describe('GCE tarball', () => {
  it('holds exactly one member, disk.raw, oldgnu and sparse, of a whole number of GiB', async () => {
    const out = join(dir, 'gce.tar.gz')
    await rawToGceTarball(disk.path, out, {sourceDateEpoch: 1700000000})
    const gz = await readFile(out)
    expect(gz.readUInt32LE(4)).toBe(0) // gzip -n: no mtime in the gzip header
    expect(gz[3] & 0x08).toBe(0) // gzip -n: no file name in the gzip header
    const tar = gunzipSync(gz)
    const h = tar.subarray(0, 512)
    expect(h.subarray(0, 100).toString('latin1').replace(/\0+$/, '')).toBe('disk.raw')
    expect(h.subarray(257, 265).toString('latin1')).toBe('ustar  \0') // oldgnu magic + version
    expect(String.fromCharCode(h[156])).toBe('S') // GNU sparse member
    expect(octal(h.subarray(136, 148))).toBe(1700000000) // mtime
    expect(octal(h.subarray(108, 116))).toBe(0) // uid
    expect(octal(h.subarray(116, 124))).toBe(0) // gid
    const realSize = octal(h.subarray(483, 495))
    expect(realSize).toBe(GiB)
    expect(realSize % GiB).toBe(0)
    // walk past sparse extension headers and the stored data: what follows must be the end of the archive
    let pos = 512
    let extended = h[482] === 1
    while (extended) {
      extended = tar[pos + 504] === 1
      pos += 512
    }
    pos += Math.ceil(octal(h.subarray(124, 136)) / 512) * 512
    expect(octal(h.subarray(124, 136))).toBeLessThan(4 * 1024 * 1024) // only the data regions are stored
    expect(tar.subarray(pos, pos + 1024).every((b) => b === 0)).toBe(true)
    expect(tar.subarray(pos).every((b) => b === 0)).toBe(true)

    // and GNU tar itself lists one member and restores the exact disk bytes
    const listing = await run('tar', ['-tzvf', out])
    expect(listing.stdout.trim().split('\n')).toHaveLength(1)
    expect(listing.stdout).toMatch(/^-rw-r--r-- 0\/0 +1073741824 2023-11-1\d \d\d:\d\d disk\.raw$/)
    const x = join(dir, 'extract')
    await run('mkdir', ['-p', x])
    await run('tar', ['-xSzf', out, '-C', x])
    expect(await sha256File(join(x, 'disk.raw'))).toBe(disk.sha256)
    await rm(x, {recursive: true})
  })

  it('has the bytes of the finished tar gzipped after by pigz -n (how releases before the piped form were made, so their re-publish matches)', async () => {
    const out = join(dir, 'piped.tar.gz')
    await rawToGceTarball(disk.path, out, {sourceDateEpoch: 1700000000})
    const stage = join(dir, 'two-steps')
    await run('mkdir', ['-p', stage])
    await run('ln', ['-sf', disk.path, join(stage, 'disk.raw')])
    await run('tar', ['--format=oldgnu', '--sparse', '--dereference', '--mtime=@1700000000', '--owner=0', '--group=0', '--numeric-owner', '--mode=0644', '-C', stage, '-cf', join(stage, 'image.tar'), 'disk.raw'])
    await run('pigz', ['-n', '-f', '-p', '1', join(stage, 'image.tar')])
    expect(await sha256File(out)).toBe(await sha256File(join(stage, 'image.tar.gz')))
  })

  it('is reproducible: the same disk gives the same bytes', async () => {
    const a = join(dir, 'a.tar.gz')
    const b = join(dir, 'b.tar.gz')
    await rawToGceTarball(disk.path, a, {sourceDateEpoch: 1700000000})
    await new Promise((r) => setTimeout(r, 1100))
    await rawToGceTarball(disk.path, b, {sourceDateEpoch: 1700000000})
    expect(await sha256File(a)).toBe(await sha256File(b))
  })

  it('refuses a disk that is not a whole number of GiB', async () => {
    const odd = join(dir, 'odd.raw')
    await writeFile(odd, '')
    await truncate(odd, GiB + 512)
    await expect(rawToGceTarball(odd, join(dir, 'odd.tar.gz'), {sourceDateEpoch: 0})).rejects.toThrow(/whole number of GiB/)
  })
})

describe('qcow2', () => {
  it('converts back to the same raw bytes and is reproducible', async () => {
    const a = join(dir, 'a.qcow2')
    const b = join(dir, 'b.qcow2')
    await rawToQcow2(disk.path, a)
    await new Promise((r) => setTimeout(r, 1100))
    await rawToQcow2(disk.path, b)
    expect(await sha256File(a)).toBe(await sha256File(b))
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', a])).stdout)
    expect(info.format).toBe('qcow2')
    expect(info['virtual-size']).toBe(GiB)
    const back = join(dir, 'back.raw')
    await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', a, back])
    expect(await sha256File(back)).toBe(disk.sha256)
  })
})

describe('prepareFormats', () => {
  it('makes each format once, names them, and refuses a disk whose bytes changed since assemble', async () => {
    const stagingDir = join(dir, 'staging')
    const opts = {stagingDir, sha256MemoDir: join(stagingDir, 'sha256-by-extents'), sourceDateEpoch: 1700000000, gceName: 'debian-12-1'}
    const arts = await prepareFormats(disk, ['raw', 'qcow2', 'gce'], opts)
    expect(arts.map((a) => a.name)).toEqual(['disk.raw', 'disk.qcow2', 'debian-12-1.tar.gz'])
    for (const a of arts) expect(a.sha256).toBe(await sha256File(a.path))
    const qcowMtime = (await stat(arts[1].path)).mtimeMs
    const again = await prepareFormats(disk, ['raw', 'qcow2', 'gce'], opts)
    expect(again).toEqual(arts)
    expect((await stat(arts[1].path)).mtimeMs).toBe(qcowMtime) // not converted again
    await expect(prepareFormats({...disk, sha256: '0'.repeat(64)}, ['raw'], opts)).rejects.toThrow(/assemble recorded 0{64}/)
  })

  it('a re-publish proves the bytes by the extent digest kept at the first: one changed byte is refused, even with the mtime put back', async () => {
    const copy = join(dir, 'changed.img')
    await run('cp', ['--sparse=always', disk.path, copy])
    const own = {...disk, path: copy}
    const opts = {stagingDir: join(dir, 'staging-extents'), sha256MemoDir: join(dir, 'staging-extents', 'sha256-by-extents'), sourceDateEpoch: 1700000000, gceName: 'debian-12-1'}
    const [first] = await prepareFormats(own, ['raw'], opts)
    expect(first!.sha256).toBe(disk.sha256)
    // the memo: the disk's extent digest names a file holding its sha256
    const memos = await readdir(join(opts.stagingDir, 'sha256-by-extents'))
    expect(memos).toEqual([expect.stringMatching(/^[0-9a-f]{64}\.sha256$/)])
    expect((await readFile(join(opts.stagingDir, 'sha256-by-extents', memos[0]!), 'utf8')).trim()).toBe(disk.sha256)
    // an identical re-publish hashes nothing but the allocated ranges
    const progress: string[] = []
    await prepareFormats(own, ['raw'], {...opts, progress: (l) => progress.push(l)})
    expect(progress.filter((l) => l.startsWith('hashing'))).toEqual([])
    // one byte of the GPT header changed, the times put back as they were
    const {atime, mtime} = await stat(copy)
    const fh = await open(copy, 'r+')
    await fh.write(Buffer.from([0x5a]), 0, 1, 512 + 100)
    await fh.close()
    await utimes(copy, atime, mtime)
    await expect(prepareFormats(own, ['raw'], {...opts, progress: (l) => progress.push(l)})).rejects.toThrow(/assemble recorded/)
    expect(progress.filter((l) => l.startsWith('hashing'))).toEqual([`hashing ${copy}`])
  })
})
