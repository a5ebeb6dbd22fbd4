import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {ExitCode, InterruptedError} from '../errors.js'
import {DirReleaseStore} from './dir-store.js'

describe('a release directory on a local file system', () => {
  it('a copy stopped by its signal part way is an interruption (exit 130), not a bug', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cvm-dir-store-'))
    try {
      const image = join(dir, 'disk.raw')
      await writeFile(image, Buffer.alloc(3 * 1024 * 1024, 1))
      const store = new DirReleaseStore({kind: 'dir', path: join(dir, 'target')}, ['debian-12', '1'])
      await store.prepare()
      const abort = new AbortController()
      const copy = store.upload(image, 'disk.raw.tmp', {signal: abort.signal, onProgress: () => abort.abort()})
      await expect(copy).rejects.toBeInstanceOf(InterruptedError)
      await expect(copy).rejects.toMatchObject({exitCode: ExitCode.interrupted})
      expect(ExitCode.interrupted).toBe(130)
    } finally {
      await rm(dir, {recursive: true, force: true})
    }
  })
})
