import {link, mkdir, open, readdir, readFile, rename, rm, stat} from 'node:fs/promises'
import {dirname, join} from 'node:path'

import {InterruptedError} from '../errors.js'
import {sha256ByExtents} from '../util/extent-hash.js'
import {sha256File, sha256FilePrefix} from '../util/fsx.js'
import {copySparse, type CopyTarget} from '../util/sparse-copy.js'
import type {ReleaseStore, TransferProgress} from './store.js'
import {describeTarget, type PublishTarget} from './target.js'

/**
 * Why mkdir -p of dir failed: the first missing part of the path, made alone, gives the real errno
 * (EROFS, EACCES), or the deepest existing part is not a directory (ENOTDIR).
 */
async function deepestCause(dir: string, original: unknown): Promise<unknown> {
  let child = dir
  let parent = dirname(dir)
  while (parent !== child && !(await stat(parent).then(() => true, () => false))) {
    child = parent
    parent = dirname(parent)
  }
  const st = await stat(parent).catch(() => undefined)
  if (st && !st.isDirectory()) return Object.assign(new Error(`${parent} is not a directory`), {code: 'ENOTDIR'})
  return mkdir(child).then(
    () => original,
    (e) => (e.code === 'EEXIST' ? original : e),
  )
}


/** A release directory on a local (or mounted) file system. */
export class DirReleaseStore implements ReleaseStore {
  readonly dir: string
  readonly location: string

  /**
   * sha256MemoDir: sha256s by extent digest (sha256ByExtents), so a large file that is already at the
   * target is proven by reading its allocated ranges alone; without it every byte is read
   */
  constructor(target: PublishTarget & {kind: 'dir'}, releasePath: string[], private readonly sha256MemoDir?: string) {
    this.dir = join(target.path, ...releasePath)
    this.location = describeTarget({kind: 'dir', path: this.dir})
  }

  /** Creates the release directory; a failure names its real cause (mkdir -p on a read-only mount says ENOENT). */
  async prepare(): Promise<void> {
    try {
      await mkdir(this.dir, {recursive: true})
    } catch (e) {
      throw await deepestCause(this.dir, e)
    }
  }

  async size(name: string): Promise<number | undefined> {
    return stat(join(this.dir, name)).then(
      (s) => s.size,
      () => undefined,
    )
  }

  async sha256(name: string): Promise<string> {
    const path = join(this.dir, name)
    return this.sha256MemoDir ? (await sha256ByExtents(path, this.sha256MemoDir)).sha256 : sha256File(path)
  }

  readFile(name: string): Promise<Buffer> {
    return readFile(join(this.dir, name))
  }

  async list(): Promise<string[]> {
    return (await readdir(this.dir).catch(() => [] as string[])).sort()
  }

  /** A sparse, resumable copy (util/sparse-copy.ts): zero blocks become holes, a matching partial file is continued. */
  async upload(localPath: string, name: string, opts: {onProgress?: (p: TransferProgress) => void; signal?: AbortSignal}) {
    const dst = join(this.dir, name)
    const target: CopyTarget = {
      where: dst,
      existingSize: () => this.size(name),
      sha256Prefix: (bytes) => sha256FilePrefix(dst, bytes),
      open: async (keep) => {
        const out = await open(dst, keep ? 'r+' : 'w')
        return {
          write: async (buf, length, position) => void (await out.write(buf, 0, length, position)),
          finish: async (size) => {
            await out.truncate(size)
            await out.sync()
          },
          close: () => out.close(),
        }
      },
    }
    return copySparse(localPath, target, {...opts, cancelled: (from) => new InterruptedError(`copy of ${from} cancelled`)})
  }

  async writeFile(name: string, data: Buffer): Promise<void> {
    const fh = await open(join(this.dir, name), 'w')
    try {
      await fh.writeFile(data)
      await fh.sync()
    } finally {
      await fh.close()
    }
  }

  /** link + unlink: link fails if the name exists, so a concurrent publisher's file is never replaced */
  async renameNoClobber(from: string, to: string): Promise<boolean> {
    try {
      await link(join(this.dir, from), join(this.dir, to))
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false
      throw e
    }
    await rm(join(this.dir, from), {force: true})
    return true
  }

  async replace(from: string, to: string): Promise<void> {
    await rename(join(this.dir, from), join(this.dir, to))
  }

  async remove(name: string): Promise<void> {
    await rm(join(this.dir, name), {force: true})
  }

  async close(): Promise<void> {
    // make the renames durable: fsync the directory
    const fh = await open(this.dir, 'r').catch(() => undefined)
    await fh?.sync().catch(() => undefined)
    await fh?.close()
  }
}


