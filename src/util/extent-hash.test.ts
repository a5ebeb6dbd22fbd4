import {existsSync} from 'node:fs'
import {mkdtemp, open, rm, truncate, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {extentSha256, parseFilefrag, sha256ByExtents} from './extent-hash.js'
import {sha256File} from './fsx.js'

const MiB = 1024 * 1024

/** what filefrag -s -v -b1 printed here for a 4 GiB debian-12 disk.raw (ext4), its first extents */
const RECORDED = `Filesystem type is: ef53
File size of disk.raw is 4294967296 (4294967296 blocks of 1 bytes)
 ext:     logical_offset:        physical_offset: length:   expected: flags:
   0:        0..   20479: 53754200064..53754220543:  20480:            
   1:  1048576..10485759: 53754220544..53763657727: 9437184:            
   2: 269484032..276824063: 53738471424..53745811455: 7340032: 54022656000:
   3: 276824064..352321535: 53770977280..53846474751: 75497472: 53745811456: last,eof
disk.raw: 4 extents found
`

describe('parseFilefrag', () => {
  it('reads the byte ranges and merges those that touch (a physical split is not a change of content)', () => {
    expect(parseFilefrag(RECORDED)).toEqual([
      [0, 20480],
      [1048576, 10485760],
      [269484032, 352321536],
    ])
  })
  it('refuses output in blocks rather than bytes, and a line whose length disagrees with its range', () => {
    expect(parseFilefrag(RECORDED.replace('blocks of 1 bytes', 'blocks of 4096 bytes'))).toBeUndefined()
    expect(parseFilefrag(RECORDED.replace(' 20480:  ', ' 20481:  '))).toBeUndefined()
  })
  it('a file with no extents is all hole', () => {
    expect(parseFilefrag('Filesystem type is: ef53\nFile size of x is 4096 (4096 blocks of 1 bytes)\n ext: logical_offset: physical_offset: length: expected: flags:\nx: 0 extents found\n')).toEqual([])
  })
})

// real files on the test directory's filesystem (ext4 here and in CI); skipped where it has no extent map
describe('extentSha256 on real sparse files', () => {
  let dir: string
  let mapped = false
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cvm-extent-'))
    await writeFile(join(dir, 'probe'), 'x')
    mapped = (await extentSha256(join(dir, 'probe'))) !== undefined
  })
  afterAll(async () => {
    if (dir && existsSync(dir)) await rm(dir, {recursive: true, force: true})
  })

  /** a 256 MiB sparse file with data at 0, 1 MiB and 200 MiB */
  async function sparse(name: string): Promise<string> {
    const p = join(dir, name)
    await writeFile(p, '')
    await truncate(p, 256 * MiB)
    const fh = await open(p, 'r+')
    for (const [i, at] of [0, MiB, 200 * MiB].entries()) await fh.write(Buffer.alloc(64 * 1024, i + 1), 0, 64 * 1024, at)
    await fh.close()
    return p
  }
  async function poke(p: string, at: number, byte: number) {
    const fh = await open(p, 'r+')
    await fh.write(Buffer.from([byte]), 0, 1, at)
    await fh.close()
  }

  it('reads only the allocated ranges, and two files with the same bytes and holes agree', async (t) => {
    if (!mapped) t.skip()
    const a = await extentSha256(await sparse('a'))
    const b = await extentSha256(await sparse('b'))
    expect(a).toBeDefined()
    expect(a!.size).toBe(256 * MiB)
    expect(a!.allocated).toBeGreaterThanOrEqual(3 * 64 * 1024)
    expect(a!.allocated).toBeLessThan(4 * MiB)
    expect(b!.digest).toBe(a!.digest)
  })

  it('changes when one byte changes, in data or in a hole', async (t) => {
    if (!mapped) t.skip()
    const p = await sparse('c')
    const before = (await extentSha256(p))!.digest
    await poke(p, MiB + 5, 0xee)
    const inData = (await extentSha256(p))!.digest
    expect(inData).not.toBe(before)
    await poke(p, 100 * MiB, 0x01)
    expect((await extentSha256(p))!.digest).not.toBe(inData)
  })

  it('the same bytes with a hole written out as zeros give another digest (the caller then hashes every byte), and the plain sha256 agrees', async (t) => {
    if (!mapped) t.skip()
    const p = await sparse('d')
    const q = await sparse('e')
    const fh = await open(q, 'r+')
    await fh.write(Buffer.alloc(MiB), 0, MiB, 50 * MiB)
    await fh.close()
    expect((await extentSha256(q))!.digest).not.toBe((await extentSha256(p))!.digest)
    expect(await sha256File(q)).toBe(await sha256File(p))
  })

  it('sha256ByExtents reads every byte once per content: then the memo answers, for the same file or a copy with the same holes, and a change is read again', async (t) => {
    if (!mapped) t.skip()
    const memo = join(dir, 'memo')
    const p = await sparse('f')
    const full = await sha256File(p)
    const reads: string[] = []
    const hash = (path: string) => sha256ByExtents(path, memo, {beforeFullRead: () => reads.push(path)})
    expect(await hash(p)).toEqual({sha256: full, read: true})
    expect(await hash(p)).toEqual({sha256: full, read: false})
    const copy = await sparse('g')
    expect(await hash(copy)).toEqual({sha256: full, read: false})
    await poke(copy, 200 * MiB + 3, 0x7f)
    const changed = await hash(copy)
    expect(changed).toEqual({sha256: await sha256File(copy), read: true})
    expect(changed.sha256).not.toBe(full)
    expect(reads).toEqual([p, copy])
  })

  it('is undefined where the filesystem has no extent map (tmpfs)', async (t) => {
    if (!existsSync('/dev/shm')) t.skip()
    const shm = await mkdtemp('/dev/shm/cvm-extent-')
    try {
      await writeFile(join(shm, 'f'), 'data')
      expect(await extentSha256(join(shm, 'f'))).toBeUndefined()
    } finally {
      await rm(shm, {recursive: true, force: true})
    }
  })
})
