import {open} from 'node:fs/promises'

import {sha256FilePrefix} from './fsx.js'

/**
 * The one resumable, sparse copy of a local file: to a local path (publish to a directory) or over
 * SFTP (publish to a host, the disk sent to a remote validation host). What differs is only where
 * the bytes go, a CopyTarget; the policy is here:
 * - resume: a partial destination whose bytes equal the source's first bytes (sha256 of that
 *   prefix on both sides) is continued from its end; anything else is written from the start;
 * - sparse: all-zero chunks are not written, and the size is set at the end, so holes stay holes
 *   and stale longer content is cut;
 * - writes may overlap (`inFlight`): one at a time is latency-bound over SSH;
 * - progress after each chunk, and once at the end when there was nothing left to send.
 */
export interface CopyTarget {
  /** where the bytes go, for messages */
  readonly where: string
  /** the size of the file there now; undefined when there is none (or it is not a regular file) */
  existingSize(): Promise<number | undefined>
  /** the sha256 of its first `bytes` bytes */
  sha256Prefix(bytes: number): Promise<string>
  /** opened for writing: keeping what is there (a resume), or emptied */
  open(keep: boolean): Promise<CopyWriter>
}

export interface CopyWriter {
  write(buf: Buffer, length: number, position: number): Promise<void>
  /** sets the final size and flushes to stable storage */
  finish(size: number): Promise<void>
  close(): Promise<void>
}

export interface CopyProgress {
  done: number
  total: number
}

export interface SparseCopyOptions {
  /** continue a matching partial destination (default true) */
  resume?: boolean
  /** skip all-zero chunks (default true) */
  sparse?: boolean
  /** writes outstanding at once (default 1) */
  inFlight?: number
  chunkBytes?: number
  onProgress?: (p: CopyProgress) => void
  signal?: AbortSignal
  /** the error a cancelled copy throws (an InterruptedError, a StageError: the caller's exit code) */
  cancelled: (localPath: string, where: string) => Error
}

export interface SparseCopyResult {
  /** bytes written to the destination */
  bytesSent: number
  /** the length of the matching partial destination the copy continued */
  resumedFrom: number
  size: number
}

export async function copySparse(localPath: string, target: CopyTarget, opts: SparseCopyOptions): Promise<SparseCopyResult> {
  const chunk = opts.chunkBytes ?? 1024 * 1024
  const inFlightMax = Math.max(1, opts.inFlight ?? 1)
  const src = await open(localPath, 'r')
  try {
    const size = (await src.stat()).size
    let start = 0
    const existing = opts.resume === false ? undefined : await target.existingSize()
    if (existing !== undefined && existing > 0 && existing <= size) {
      const [there, here] = await Promise.all([target.sha256Prefix(existing), sha256FilePrefix(localPath, existing)])
      if (there === here) start = existing
    }
    const out = await target.open(start > 0)
    let bytesSent = 0
    const pending = new Set<Promise<void>>()
    try {
      let failure: {error: unknown} | undefined
      for (let pos = start; pos < size; pos += chunk) {
        if (opts.signal?.aborted) throw opts.cancelled(localPath, target.where)
        // a buffer per chunk: a write may still be reading the last one
        const buf = Buffer.allocUnsafe(Math.min(chunk, size - pos))
        const {bytesRead} = await src.read(buf, 0, buf.length, pos)
        if (bytesRead === 0) break
        if (opts.sparse === false || !isAllZero(buf, bytesRead)) {
          const p = out.write(buf, bytesRead, pos).catch((error) => void (failure ??= {error}))
          pending.add(p)
          void p.finally(() => pending.delete(p))
          bytesSent += bytesRead
          if (pending.size >= inFlightMax) await Promise.race(pending)
          if (failure) throw failure.error
        }
        opts.onProgress?.({done: pos + bytesRead, total: size})
      }
      await Promise.all(pending)
      if (failure) throw failure.error
      await out.finish(size)
      if (size === start) opts.onProgress?.({done: size, total: size})
    } finally {
      // a failed or cancelled copy: the writes already started end before the file is closed
      await Promise.allSettled(pending)
      await out.close()
    }
    return {bytesSent, resumedFrom: start, size}
  } finally {
    await src.close()
  }
}

function isAllZero(buf: Buffer, length = buf.length): boolean {
  for (let off = 0; off < length; off += ZEROS.length) {
    const n = Math.min(ZEROS.length, length - off)
    if (!buf.subarray(off, off + n).equals(ZEROS.subarray(0, n))) return false
  }
  return true
}

const ZEROS = Buffer.alloc(64 * 1024)
