import {createHash, randomBytes} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {mkdir, open, rename, rm, writeFile} from 'node:fs/promises'
import {dirname, join, basename} from 'node:path'

export type Json = null | boolean | number | string | Json[] | {[k: string]: Json}

/** JSON with sorted keys, so equal values hash equally. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(sortKeys(v))
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys)
  if (v && typeof v === 'object') {
    const o: Record<string, unknown> = {}
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k]
      if (x !== undefined) o[k] = sortKeys(x)
    }
    return o
  }
  return v
}

export function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256')
  // 1 MiB reads: hashing a GiB disk is twice as fast as with the 64 KiB default
  for await (const chunk of createReadStream(path, {highWaterMark: 1024 * 1024})) h.update(chunk as Buffer)
  return h.digest('hex')
}

/** A sibling temp path for atomic writes: same directory, so rename is atomic. */
export function tempSibling(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
}

/** fsyncs a finished file, so that a rename or link of it never shows a partial one after a crash. */
export async function syncFile(path: string): Promise<void> {
  const fh = await open(path, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/** Write a file atomically: temp file, fsync, rename. A reader sees the old or the new file, never half. */
export async function atomicWriteFile(path: string, data: string | Buffer): Promise<void> {
  await mkdir(dirname(path), {recursive: true})
  const tmp = tempSibling(path)
  try {
    await writeFile(tmp, data)
    await syncFile(tmp)
    await rename(tmp, path)
  } catch (e) {
    await rm(tmp, {force: true})
    throw e
  }
}

/** sha256 of the first `length` bytes of a file (resuming an upload checks the part already there). */
export async function sha256FilePrefix(path: string, length: number): Promise<string> {
  const h = createHash('sha256')
  const fh = await open(path, 'r')
  try {
    const buf = Buffer.allocUnsafe(1024 * 1024)
    for (let pos = 0; pos < length; ) {
      const {bytesRead} = await fh.read(buf, 0, Math.min(buf.length, length - pos), pos)
      if (bytesRead === 0) break
      h.update(buf.subarray(0, bytesRead))
      pos += bytesRead
    }
  } finally {
    await fh.close()
  }
  return h.digest('hex')
}
