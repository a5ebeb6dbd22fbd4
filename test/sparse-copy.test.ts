import {mkdtemp, open, readFile, rm, stat, truncate, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {InterruptedError} from '../src/errors.js'
import {DirReleaseStore} from '../src/publish/dir-store.js'
import {SftpReleaseStore} from '../src/publish/sftp-store.js'
import type {ReleaseStore} from '../src/publish/store.js'
import {startSshd, type TestSshd} from './helpers/sshd.js'

/**
 * The one resumable, sparse copy (src/util/sparse-copy.ts) as both release stores use it: to a
 * local directory, and over SFTP to a real OpenSSH server on 127.0.0.1 (SshSession.upload, which
 * also sends the disk to a remote validation host). The same cases on both.
 */
const MiB = 1024 * 1024
let work: string
let sshd: TestSshd
/** 8 MiB: data, a 4 MiB hole, data, and a hole at the end */
let source: string
let sourceBytes: Buffer

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'cvm-sparse-copy-'))
  sshd = await startSshd()
  source = join(work, 'disk.raw')
  await writeFile(source, '')
  await truncate(source, 8 * MiB)
  const fh = await open(source, 'r+')
  for (const [at, fill] of [[0, 0x11], [5 * MiB, 0x22]] as const) await fh.write(Buffer.alloc(MiB + 4096, fill), 0, MiB + 4096, at)
  await fh.close()
  sourceBytes = await readFile(source)
})

afterAll(async () => {
  await sshd?.stop()
  if (work) await rm(work, {recursive: true, force: true})
})

const stores: {kind: string; open: (name: string) => Promise<ReleaseStore>}[] = [
  {kind: 'dir', open: async (name) => new DirReleaseStore({kind: 'dir', path: join(work, 'dir-target')}, [name])},
  {
    kind: 'sftp',
    open: (name) =>
      SftpReleaseStore.open({kind: 'sftp', user: sshd.user, host: '127.0.0.1', port: sshd.port, path: join(work, 'sftp-target')}, [name], {hostKey: sshd.hostKeyFingerprint, privateKey: sshd.userKeyPath}),
  },
]

describe.each(stores)('the sparse, resumable copy to a $kind release store', ({kind, open: openStore}) => {
  const dest = (name: string, file: string) => join(work, `${kind}-target`, name, file)
  async function withStore<T>(name: string, fn: (s: ReleaseStore) => Promise<T>): Promise<T> {
    const s = await openStore(name)
    try {
      await s.prepare()
      return await fn(s)
    } finally {
      await s.close()
    }
  }

  it('copies every byte, writes none of the zero chunks, and leaves the holes as holes', async () => {
    const progress: number[] = []
    const r = await withStore('fresh', (s) => s.upload(source, 'disk.raw', {onProgress: (p) => progress.push(p.done)}))
    expect(r.resumedFrom).toBe(0)
    // the data, rounded out to whole chunks (1 MiB locally, 256 KiB over SFTP): not the 4 MiB hole nor the one at the end
    expect(r.bytesSent).toBeGreaterThanOrEqual(2 * MiB + 8192)
    expect(r.bytesSent).toBeLessThanOrEqual(4 * MiB)
    expect((await readFile(dest('fresh', 'disk.raw'))).equals(sourceBytes)).toBe(true)
    // 2 MiB and 8 KiB of data written: the file holds about that much, not 8 MiB
    expect((await stat(dest('fresh', 'disk.raw'))).blocks * 512).toBeLessThan(5 * MiB)
    expect(progress.at(-1)).toBe(8 * MiB)
  })

  it('continues a partial copy whose bytes match, from its end', async () => {
    const partial = dest('resume', 'disk.raw')
    await withStore('resume', async () => undefined)
    await writeFile(partial, sourceBytes.subarray(0, 5 * MiB + 512))
    const r = await withStore('resume', (s) => s.upload(source, 'disk.raw', {}))
    expect(r.resumedFrom).toBe(5 * MiB + 512)
    // the rest of the second data chunk (1 MiB from 5 MiB) and the last partial chunk with data
    expect(r.bytesSent).toBeLessThanOrEqual(2 * MiB)
    expect((await readFile(partial)).equals(sourceBytes)).toBe(true)
  })

  it('writes a partial copy that differs, or one longer than the source, from the start, and cuts it to size', async () => {
    const other = dest('differs', 'disk.raw')
    await withStore('differs', async () => undefined)
    const wrong = Buffer.from(sourceBytes.subarray(0, 3 * MiB))
    wrong[100] ^= 0xff
    await writeFile(other, wrong)
    const r1 = await withStore('differs', (s) => s.upload(source, 'disk.raw', {}))
    expect(r1.resumedFrom).toBe(0)
    expect((await readFile(other)).equals(sourceBytes)).toBe(true)

    await writeFile(other, Buffer.concat([sourceBytes, Buffer.alloc(MiB, 0x33)]))
    const r2 = await withStore('differs', (s) => s.upload(source, 'disk.raw', {}))
    expect(r2.resumedFrom).toBe(0)
    expect((await readFile(other)).equals(sourceBytes)).toBe(true)
  })

  it('a whole copy already there sends nothing and still reports it done', async () => {
    const progress: number[] = []
    const r = await withStore('fresh', (s) => s.upload(source, 'disk.raw', {onProgress: (p) => progress.push(p.done)}))
    expect(r).toMatchObject({resumedFrom: 8 * MiB, bytesSent: 0})
    expect(progress).toEqual([8 * MiB])
  })

  it('stops at its signal', async () => {
    const abort = new AbortController()
    const copy = withStore('stopped', (s) => s.upload(source, 'disk.raw', {signal: abort.signal, onProgress: () => abort.abort()}))
    if (kind === 'dir') await expect(copy).rejects.toBeInstanceOf(InterruptedError)
    await expect(copy).rejects.toThrow(/cancelled/)
  })
})
