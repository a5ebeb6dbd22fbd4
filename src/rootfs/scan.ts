import {createReadStream} from 'node:fs'
import {pipeline} from 'node:stream/promises'

import tar from 'tar-stream'

import {InputError} from '../errors.js'

/** Counts a tarball's entries, reading it once; a damaged archive is an InputError. */
export async function countEntries(tarball: string): Promise<number> {
  const extract = tar.extract()
  const reading = pipeline(createReadStream(tarball), extract as unknown as NodeJS.WritableStream)
  reading.catch(() => undefined)
  let n = 0
  try {
    for await (const entry of extract) {
      n++
      entry.resume()
    }
    await reading
  } catch (e) {
    throw new InputError(`${tarball} is not a readable tar archive (after ${n} entries): ${(e as Error).message}`, {cause: e, hint: 'the base is damaged: build or download it again'})
  }
  return n
}

/**
 * The content of the regular file at a canonical name (etc/dnf/dnf.conf) in a rootfs tarball, read in
 * one pass; undefined when there is none (or it is not a regular file). For small configuration files.
 */
export async function readTarFile(tarball: string, name: string): Promise<Buffer | undefined> {
  const extract = tar.extract()
  const reading = pipeline(createReadStream(tarball), extract as unknown as NodeJS.WritableStream)
  reading.catch(() => undefined)
  let found: Buffer | undefined
  for await (const entry of extract) {
    const entryName = entry.header.name.replace(/^(\.\/)+/, '').replace(/\/+$/, '')
    if (entryName === name && (entry.header.type ?? 'file') === 'file') {
      const chunks: Buffer[] = []
      for await (const c of entry) chunks.push(c as Buffer)
      found = Buffer.concat(chunks)
    } else {
      entry.resume()
    }
  }
  await reading
  return found
}
