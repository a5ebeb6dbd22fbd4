import {randomBytes} from 'node:crypto'
import {createReadStream, createWriteStream, existsSync} from 'node:fs'
import {mkdir, rename, rm, stat} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {fileURLToPath} from 'node:url'

import {InputError, StageError} from '../errors.js'
import {run} from './exec.js'
import {sha256File} from './fsx.js'

export interface DownloadOptions {
  signal?: AbortSignal
  progress?: (line: string) => void
  /** where the pin comes from, for the error when the bytes differ (e.g. "recipe.kernel.source.sha256") */
  pinnedBy?: string
}

/** A file a recipe pins by sha256: downloaded into the cache, or a copy the user gave. */
export interface PinnedFile {
  url: string
  sha256: string
  /** what it is and where its pin is set, for messages: "recipe.kernel.source.sha256" */
  pinnedBy: string
  /** a copy the user gave instead of the download (the flag that named it, for messages) */
  given?: {path: string; flag: string}
  cacheDir: string
}

/** Where downloads live in the cache: downloads/<first 16 hex of the sha256>-<the URL's file name>. */
export function downloadPath(cacheDir: string, sha256: string, url: string): string {
  const name = basename(url.split(/[?#]/)[0]) || 'download'
  return join(cacheDir, 'downloads', `${sha256.slice(0, 16)}-${name}`)
}

/**
 * The one way to a pinned input file: the copy the user gave, copied into the cache and checked
 * there against the pin, else the cache's copy if it matches, else a (resumed) download, checked
 * before it is kept. What is returned is always the cache's file, never the user's: what was
 * checked is what is read, whatever happens to the user's file afterwards.
 */
export async function pinnedFile(f: PinnedFile, opts: Omit<DownloadOptions, 'pinnedBy'> = {}): Promise<string> {
  const dest = downloadPath(f.cacheDir, f.sha256, f.url)
  if (f.given) {
    // the cache holds these bytes already (a copy checked on an earlier run): the user's file is not read again
    if (existsSync(dest) && (await sha256File(dest)) === f.sha256) return dest
    opts.progress?.(`copying ${f.given.path} into the cache`)
    // a name of its own: builds that share the cache (the tests' backports share one archive) may copy the same file at once
    const copy = await copyIn(f.given.path, `${dest}.${process.pid}-${randomBytes(4).toString('hex')}.copy`, f.given.flag)
    const got = await sha256File(copy)
    if (got !== f.sha256) {
      await rm(copy, {force: true})
      throw new InputError(`${f.given.flag} ${f.given.path}: sha256 ${got} is not the pinned ${f.sha256} (${f.pinnedBy}, for ${f.url})`, {
        hint: `give a copy of the file ${f.pinnedBy} pins, or change that pin only if you trust your copy`,
      })
    }
    await rename(copy, dest)
    return dest
  }
  return downloadPinned(f.url, f.sha256, dest, {...opts, pinnedBy: f.pinnedBy})
}

/**
 * Copies a file the user gave (named by `flag`, for messages) to `dest`, once: everything after
 * reads the copy, which no one else writes. A half-written copy is removed.
 */
export async function copyIn(path: string, dest: string, flag: string): Promise<string> {
  const st = await stat(path).catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`${flag} ${path} cannot be read: ${e.code ?? e.message}`, {hint: `check the path given to ${flag}`, cause: e})
  })
  if (!st.isFile()) throw new InputError(`${flag} ${path}: it is not a regular file; it is read from a file, not a device, pipe or directory`, {hint: `give the file itself to ${flag}`})
  await mkdir(dirname(dest), {recursive: true})
  // a raw disk image is mostly holes: the copy keeps them (and shares extents where the file system can)
  const r = await run('cp', ['--sparse=always', '--reflink=auto', '--', path, dest], {what: `copy ${flag} ${path} into the cache`, reject: false})
  if (r.exitCode !== 0) {
    await rm(dest, {force: true})
    throw new InputError(`${flag} ${path} cannot be copied: ${r.stderr.trim().split('\n').at(-1) ?? `cp exited with ${r.exitCode}`}`, {hint: `check that ${path} is a readable file and that the cache has room`})
  }
  return dest
}

/**
 * The one downloader: fetches url to dest and keeps it only when its sha256 is the pinned one.
 * An interrupted download leaves dest.part behind and the next call resumes it with an HTTP Range
 * request; file:// URLs are copied. A file already at dest with the pinned digest is kept.
 */
export async function downloadPinned(url: string, sha256: string, dest: string, opts: DownloadOptions = {}): Promise<string> {
  if (existsSync(dest)) {
    if ((await sha256File(dest)) === sha256) return dest
    await rm(dest, {force: true})
  }
  // said only when the cache has no good copy: a cache hit downloads nothing
  opts.progress?.(`downloading ${url}`)
  await mkdir(dirname(dest), {recursive: true})
  const part = `${dest}.part`
  if (url.startsWith('file://')) {
    await pipeline(createReadStream(fileURLToPath(url)), createWriteStream(part), {signal: opts.signal})
  } else {
    await fetchResumable(url, part, opts)
  }
  const got = await sha256File(part)
  if (got !== sha256) {
    await rm(part, {force: true})
    throw new InputError(`${url} has sha256 ${got}, not the pinned ${sha256}`, {
      hint: `the file changed upstream, the pin is wrong, or the download was tampered with: check the publisher's checksum, and change ${opts.pinnedBy ?? 'the pin'} only if you trust the new file`,
    })
  }
  await rename(part, dest)
  return dest
}

async function fetchResumable(url: string, part: string, opts: DownloadOptions): Promise<void> {
  const have = existsSync(part) ? (await stat(part)).size : 0
  const res = await fetch(url, {headers: have ? {range: `bytes=${have}-`} : {}, signal: opts.signal, redirect: 'follow'}).catch((e: unknown) => {
    throw new StageError(`cannot download ${url}: ${(e as Error).message}`, {hint: 'check the network and the URL; a rerun resumes the download', cause: e})
  })
  // 206: the server resumes at our offset; 200: it sends the whole file again; 416: the part is already complete
  if (res.status === 416 && have) return
  if ((res.status !== 200 && res.status !== 206) || !res.body) {
    throw new StageError(`cannot download ${url}: HTTP ${res.status} ${res.statusText}`, {hint: `check the URL${opts.pinnedBy ? ` beside ${opts.pinnedBy}` : ''}; a rerun resumes the download`})
  }
  const append = res.status === 206 && have > 0
  if (append) opts.progress?.(`resuming ${url} at ${have} bytes`)
  const total = Number(res.headers.get('content-length') ?? 0) + (append ? have : 0)
  let done = append ? have : 0
  let shown = -1
  const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream)
  body.on('data', (c: Buffer) => {
    done += c.length
    const pct = total ? Math.floor((100 * done) / total) : -1
    if (pct !== shown) {
      shown = pct
      if (total) opts.progress?.(`download ${pct}% of ${(total / 1e6).toFixed(0)} MB`)
    }
  })
  await pipeline(body, createWriteStream(part, {flags: append ? 'a' : 'w'}), {signal: opts.signal}).catch((e: unknown) => {
    throw new StageError(`download of ${url} was interrupted: ${(e as Error).message}`, {hint: 'run the build again: it resumes where this one stopped', cause: e})
  })
}
