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
