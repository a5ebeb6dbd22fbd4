import {createHash} from 'node:crypto'
import {mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {pinnedFile} from './download.js'

const dir = mkdtempSync(join(tmpdir(), 'cvm-download-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))

describe('pinnedFile with a copy the user gave', () => {
  it('builds sharing one cache may copy the same file at once: each gets the checked bytes, no copy is left', async () => {
    // the suite's backport builds give the same archive to the same cache at the same time
    const given = join(dir, 'old-kernels.tar.zst')
    const bytes = Buffer.alloc(8 * 1024 * 1024, 7)
    writeFileSync(given, bytes)
    const sha256 = createHash('sha256').update(bytes).digest('hex')
    const cacheDir = join(dir, 'cache')
    const f = {url: 'https://example.org/old-kernels.tar.zst', sha256, pinnedBy: 'test pin', given: {path: given, flag: '--kernel-source-file'}, cacheDir}
    const paths = await Promise.all(Array.from({length: 6}, () => pinnedFile(f)))
    expect(new Set(paths).size).toBe(1)
    expect(createHash('sha256').update(readFileSync(paths[0])).digest('hex')).toBe(sha256)
    expect(readdirSync(join(cacheDir, 'downloads'))).toEqual([paths[0].split('/').at(-1)])
  })

  it('keeps a sparse disk sparse, and takes the cache\'s checked copy on the next run without reading the user\'s file', async () => {
    const given = join(dir, 'disk.raw')
    writeFileSync(given, 'MBR')
    truncateSync(given, 256 * 1024 * 1024)
    const sha256 = createHash('sha256').update(readFileSync(given)).digest('hex')
    const f = {url: 'https://example.org/disk.raw', sha256, pinnedBy: 'test pin', given: {path: given, flag: '--base-file'}, cacheDir: join(dir, 'cache-sparse')}
    const copy = await pinnedFile(f)
    expect(statSync(copy).blocks * 512).toBeLessThan(1024 * 1024)
    rmSync(given)
    expect(await pinnedFile(f)).toBe(copy)
  })
})
