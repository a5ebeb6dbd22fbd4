import {createWriteStream, existsSync} from 'node:fs'
import {mkdir, rename, rm, stat, copyFile} from 'node:fs/promises'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {fileURLToPath} from 'node:url'
import {dirname} from 'node:path'

import {InputError, StageError} from '../errors.js'
import {sha256File} from '../util/fsx.js'

/**
 * Fetches a URL into a content-addressed file, resuming a partial download with an HTTP Range
 * request, and keeps the file only when its sha256 is the pinned one.
 */
export async function fetchPinned(url: string, sha256: string, dest: string, opts: {signal?: AbortSignal; progress?: (line: string) => void} = {}): Promise<string> {
  if (existsSync(dest)) return dest
  await mkdir(dirname(dest), {recursive: true})
  const part = `${dest}.part`
  if (url.startsWith('file://')) {
    await copyFile(fileURLToPath(url), part)
  } else {
    await httpResume(url, part, opts)
  }
  const got = await sha256File(part)
  if (got !== sha256) {
    await rm(part, {force: true})
    throw new InputError(`${url} has sha256 ${got}, not the pinned ${sha256}`, {
      hint: 'the file changed upstream or the download was tampered with; check the source and update the recipe\'s sha256 only if you trust the new file',
    })
  }
  await rename(part, dest)
  return dest
}

async function httpResume(url: string, part: string, opts: {signal?: AbortSignal; progress?: (line: string) => void}): Promise<void> {
  const have = existsSync(part) ? (await stat(part)).size : 0
  const res = await fetch(url, {headers: have ? {Range: `bytes=${have}-`} : {}, signal: opts.signal, redirect: 'follow'}).catch((e: unknown) => {
    throw new StageError(`cannot download ${url}: ${(e as Error).message}`, {hint: 'check the network and the URL; a rerun resumes the download', cause: e})
  })
  if (res.status === 416 && have) return // the part file is already complete
  if (!res.ok || !res.body) throw new StageError(`cannot download ${url}: HTTP ${res.status}`, {hint: 'check the URL in the recipe; a rerun resumes the download'})
  // 206: the server resumed at our offset; 200: it sent the whole file again
  const append = res.status === 206 && have > 0
  if (append) opts.progress?.(`resuming ${url} at ${have} bytes`)
  await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), createWriteStream(part, {flags: append ? 'a' : 'w'})).catch((e: unknown) => {
    throw new StageError(`download of ${url} was interrupted: ${(e as Error).message}`, {hint: 'run the build again: it resumes where this one stopped', cause: e})
  })
}
