import {spawn} from 'node:child_process'
import {createReadStream, createWriteStream} from 'node:fs'
import {rm, stat} from 'node:fs/promises'
import {dirname} from 'node:path'
import {Transform, type Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {createGunzip} from 'node:zlib'

import {HostError, InputError, StageError} from '../errors.js'
import {containedArgv, which} from '../util/exec.js'
import {fileSystemOf} from '../util/free-space.js'

/** what a decompression leaves free at least: 256 MiB, or a tenth of what was free on a small file system */
const KEEP_FREE_MAX = 256 * 1024 * 1024

/** thrown inside the stream when the output passes its bound */
class WouldFill extends Error {}

/**
 * A base archive (tar, tar.gz, tar.xz, tar.zst) as an uncompressed tarball, streamed. Disk images go
 * to diskToRootfs. The output is bounded by the free space of its file system (less a reserve):
 * a tarball that would fill it (a decompression bomb, or just too large) stops there, its partial
 * output removed, as a StageError (exit 1) naming the stage. The bound is counted on the stream,
 * since no compressed format's own size field can be trusted.
 */
export async function decompressRootfs(source: string, format: string, output: string, opts: {signal?: AbortSignal} = {}): Promise<void> {
  const fs = await fileSystemOf(dirname(output))
  const limit = fs.free - Math.min(KEEP_FREE_MAX, Math.floor(fs.free / 10))
  const wouldFill = (written: number) =>
    new StageError(`base: the ${format} base ${source} would fill the file system of ${dirname(output)}: stopped after ${written} bytes of its tarball, with ${fs.free} bytes free when it began (${fs.type} ${fs.source} mounted at ${fs.mountPoint}); its partial output was removed`, {
      hint: `free space there or point --cache-dir (or CVM_IMAGE_CACHE) at a larger file system; if the tarball is not meant to be that large, check the file (\`${format === 'tar.gz' ? 'gzip -l' : format === 'tar.xz' ? 'xz --list' : format === 'tar.zst' ? 'zstd -l' : 'ls -l'} ${source}\`)`,
    })
  let written = 0
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      written += chunk.length
      if (written > limit) done(new WouldFill())
      else done(null, chunk)
    },
  })
  const write = async (from: Readable, ...through: Transform[]) => {
    try {
      await pipeline([from, ...through, counter, createWriteStream(output)], {signal: opts.signal})
    } catch (e) {
      await rm(output, {force: true})
      if (e instanceof WouldFill) throw wouldFill(written)
      // another writer took the space meanwhile
      if ((e as NodeJS.ErrnoException).code === 'ENOSPC') throw new StageError(`base: no space left on device writing the tarball of ${source} (${written} bytes written, removed)`, {cause: e, hint: 'free space where the cache is, then run it again'})
      throw e
    }
  }
  switch (format) {
    case 'tar': {
      const size = (await stat(source)).size
      if (size > limit) throw wouldFill(0)
      await write(createReadStream(source))
      return
    }
    case 'tar.gz':
      await write(createReadStream(source), createGunzip()).catch((e: unknown) => {
        if (e instanceof StageError || opts.signal?.aborted) throw e
        throw new InputError(`${source} is not a valid gzip file: ${(e as Error).message}`, {cause: e})
      })
      return
    case 'tar.zst':
      await fromTool('zstd', ['--decompress', '--stdout', '--quiet', source], source, write)
      return
    case 'tar.xz':
      await fromTool('xz', ['--decompress', '--stdout', '--threads=0', source], source, write)
      return
    default:
      // disk images (qcow2, raw, vmdk) are read by diskToRootfs (disk-base.ts)
      throw new InputError(`base format "${format}" is not a tarball (tar, tar.gz, tar.xz, tar.zst)`)
  }
}

/**
 * A decompressor's stdout through `write`. The tool runs contained as run() runs every child (its
 * own group, killed with cvm-image); it is killed when the output stops early.
 */
async function fromTool(cmd: string, args: string[], source: string, write: (from: Readable) => Promise<void>): Promise<void> {
  if (!(await which(cmd))) throw new HostError(`${cmd}: not found on this host (needed to decompress ${source})`, {hint: 'run `cvm-image doctor` to see which package provides it, or `cvm-image doctor --install` as root'})
  const [file, argv] = containedArgv(cmd, args)
  const child = spawn(file, argv, {stdio: ['ignore', 'pipe', 'pipe'], detached: true})
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)))
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)))
  try {
    await write(child.stdout)
  } catch (e) {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL')
    } catch {
      // ended already
    }
    await exited
    throw e
  }
  const code = await exited
  if (code !== 0) throw new StageError(`decompress ${source}: ${cmd} exited with ${code}`, {details: stderr.trim().split('\n').slice(-10).map((l) => `  | ${l}`)})
}
