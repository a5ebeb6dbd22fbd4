import {existsSync} from 'node:fs'
import {mkdir, readFile, rm, stat} from 'node:fs/promises'
import {join} from 'node:path'

import {StageError} from '../errors.js'
import type {ImageFormat} from '../recipe/schema.js'
import {sha256ByExtents} from '../util/extent-hash.js'
import {atomicWriteFile, sha256, sha256File, tempSibling} from '../util/fsx.js'
import {placeOnce, sweepStaleTemps} from './staging.js'
import {FORMATS} from './table.js'

/** bump when a conversion changes its output bytes: it names the staging directory */
export const FORMATS_VERSION = 1

/** One file to publish, made from the assembled disk. */
export interface ImageArtifact {
  format: ImageFormat
  /** the file name at the target */
  name: string
  /** the local file */
  path: string
  size: number
  sha256: string
}

export interface PrepareOptions {
  /** where conversions are kept between runs, keyed by the disk's sha256 (so a re-run converts nothing) */
  stagingDir: string
  sourceDateEpoch: number
  /** sha256s by extent digest (sha256ByExtents, src/util/extent-hash.ts) */
  sha256MemoDir: string
  /** the GCE tarball's file name without .tar.gz */
  gceName: string
  signal?: AbortSignal
  progress?: (line: string) => void
  /** the team's store of format files (a registry: src/pipeline/format-share.ts): a file not staged here is taken from it before converting, and every file is offered to it */
  share?: FormatShare
}

/**
 * Format files made on other machines (docs/remote-cache.md "Publish's formats"). A file is named by
 * formatKey: the same disk, time and conversion give the same bytes, wherever they were made.
 */
export interface FormatShare {
  /**
   * puts the file of (format, key) at path, whole, fsynced and digest-checked, unless a file is there
   * already (placeOnce: placed says which), or says why not; writes nothing else
   */
  pull(format: ImageFormat, key: string, path: string): Promise<{sha256: string; placed: boolean} | {reason: string}>
  /** offers a file made or found here; a failure is the share's to report, never the caller's */
  push(format: ImageFormat, key: string, file: {path: string; sha256: string}): Promise<void>
}

/**
 * What a format file is made of: the disk's sha256, the build's time and the conversion's version.
 * Not the tools' versions: qemu-img, tar or pigz of another version may give other bytes of the same
 * disk, and runners sharing a registry then publish the bytes of whichever pushed first (each
 * release names the sha256 of what it holds).
 */
export function formatKey(format: ImageFormat, diskSha256: string, sourceDateEpoch: number): string {
  return sha256(['cvm-image format file', format, `v${FORMATS_VERSION}`, diskSha256, String(sourceDateEpoch)].join('\0'))
}

export function publishedName(format: ImageFormat, gceName: string): string {
  return FORMATS[format].publishedName(gceName)
}

/**
 * Makes every requested format from the raw disk and hashes it. The raw disk is first checked against
 * the sha256 assemble recorded: a cache entry that changed since is refused, not published.
 */
export async function prepareFormats(disk: {path: string; sha256: string}, formats: readonly ImageFormat[], opts: PrepareOptions): Promise<ImageArtifact[]> {
  const dir = join(opts.stagingDir, `${disk.sha256.slice(0, 16)}-${opts.sourceDateEpoch}-v${FORMATS_VERSION}`)
  await mkdir(dir, {recursive: true})
  await sweepStaleTemps(dir)
  // every format is made from these bytes, so they are checked first whatever is published
  const diskSha256 = await verifiedDiskSha256(disk, opts.sha256MemoDir, opts.progress, opts.signal)
  const artifacts: ImageArtifact[] = []
  for (const format of formats) {
    const name = publishedName(format, opts.gceName)
    const staged = FORMATS[format].staged
    if (!staged) {
      artifacts.push({format, name, path: disk.path, size: (await stat(disk.path)).size, sha256: diskSha256})
      continue
    }
    const path = join(dir, staged.file)
    const key = formatKey(format, diskSha256, opts.sourceDateEpoch)
    let sha256: string | undefined
    if (!existsSync(path)) {
      // the sha256 of a staged file removed by hand must not be taken for its successor's
      await rm(`${path}.sha256`, {force: true})
      const pulled = opts.share && (await opts.share.pull(format, key, path))
      if (pulled && 'sha256' in pulled) {
        // placed: the file there is the one whose digest was checked (otherwise another publish's, hashed below)
        if (pulled.placed) {
          sha256 = pulled.sha256
          await atomicWriteFile(`${path}.sha256`, sha256 + '\n')
        }
        opts.progress?.(`${format}: taken from the registry (sha256 ${pulled.sha256})`)
      } else {
        opts.progress?.(`converting to ${format}`)
        const tmp = tempSibling(path)
        try {
          await staged.convert(disk.path, tmp, opts)
          await placeOnce(tmp, path)
        } finally {
          await rm(tmp, {force: true})
        }
      }
    }
    sha256 ??= await cachedSha256(path)
    await opts.share?.push(format, key, {path, sha256})
    artifacts.push({format, name, path, size: (await stat(path)).size, sha256})
  }
  return artifacts
}

/** sha256 of a staged file, kept beside it (the file never changes once placed: placeOnce) */
async function cachedSha256(path: string): Promise<string> {
  const side = `${path}.sha256`
  if (existsSync(side)) return (await readFile(side, 'utf8')).trim()
  const digest = await sha256File(path)
  await atomicWriteFile(side, digest + '\n')
  return digest
}

/**
 * Hashes the assembled disk and checks it against assemble's record. A re-publish reads only the
 * disk's allocated ranges (sha256ByExtents, src/util/extent-hash.ts: about 0.3 s for debian-12's
 * 4 GiB disk instead of 2.8 s) and still covers every byte.
 */
async function verifiedDiskSha256(disk: {path: string; sha256: string}, memoDir: string, progress?: (line: string) => void, signal?: AbortSignal): Promise<string> {
  const {sha256} = await sha256ByExtents(disk.path, memoDir, {signal, beforeFullRead: () => progress?.(`hashing ${disk.path}`)})
  if (sha256 !== disk.sha256) {
    throw new StageError(`${disk.path} has sha256 ${sha256}, but assemble recorded ${disk.sha256}`, {hint: 'the build cache was changed after the build; rebuild with `cvm-image build <id> --force assemble`'})
  }
  return sha256
}
