import {createReadStream, createWriteStream, existsSync} from 'node:fs'
import {mkdir, rename, rm, stat} from 'node:fs/promises'
import {dirname} from 'node:path'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {fileURLToPath} from 'node:url'

import {InputError, StageError} from '../errors.js'
import {sha256File} from '../util/fsx.js'

/**
 * Downloads url to dest and checks its sha256 before anyone uses it. An interrupted download
 * leaves dest.part behind and the next call resumes it with an HTTP Range request.
 * file:// URLs are copied. A file already at dest with the right digest is kept.
 */
export async function downloadVerified(url: string, dest: string, expectSha256: string, opts: {signal?: AbortSignal; progress?: (line: string) => void} = {}): Promise<void> {
  if (existsSync(dest) && (await sha256File(dest)) === expectSha256) return
  await mkdir(dirname(dest), {recursive: true})
  const part = `${dest}.part`
  if (url.startsWith('file://')) {
    await pipeline(createReadStream(fileURLToPath(url)), createWriteStream(part), {signal: opts.signal})
  } else {
    await fetchResumable(url, part, opts)
  }
  const got = await sha256File(part)
  if (got !== expectSha256) {
    await rm(part, {force: true})
    throw new InputError(`${url}: sha256 is ${got}, the recipe pins ${expectSha256}`, {
      hint: 'the file changed upstream or the pin is wrong: check the publisher\'s checksum and fix recipe.kernel.source.sha256',
    })
  }
  await rename(part, dest)
}

async function fetchResumable(url: string, part: string, opts: {signal?: AbortSignal; progress?: (line: string) => void}): Promise<void> {
  const have = existsSync(part) ? (await stat(part)).size : 0
  const res = await fetch(url, {headers: have ? {range: `bytes=${have}-`} : {}, signal: opts.signal}).catch((e: Error) => {
    throw new StageError(`download ${url}: ${e.message}`, {hint: 'check the URL and the network; run the build again to resume'})
  })
  // 206: the server resumes; 200: it sends the whole file again; 416: the part is already complete
  if (res.status === 416) return
  if (res.status !== 200 && res.status !== 206) {
    throw new StageError(`download ${url}: HTTP ${res.status} ${res.statusText}`, {hint: 'check recipe.kernel.source.url'})
  }
  const append = res.status === 206
  const total = Number(res.headers.get('content-length') ?? 0) + (append ? have : 0)
  let done = append ? have : 0
  const body = Readable.fromWeb(res.body as never)
  body.on('data', (c: Buffer) => {
    done += c.length
    if (total) opts.progress?.(`download ${Math.floor((100 * done) / total)}% of ${(total / 1e6).toFixed(0)} MB`)
  })
  await pipeline(body, createWriteStream(part, {flags: append ? 'a' : 'w'}), {signal: opts.signal})
}
