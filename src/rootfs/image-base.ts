import {rm} from 'node:fs/promises'
import {join} from 'node:path'

import {BugError, CvmError, ExitCode} from '../errors.js'
import {copyIn, pinnedFile} from '../util/download.js'
import {sha256File} from '../util/fsx.js'
import {decompressRootfs} from './decompress.js'
import {diskToRootfs, isDiskFormat} from './disk-base.js'

/** An image base as the base stage has it: where it comes from and what vouches for its bytes. */
export interface ImageBaseSource {
  url: string
  /** a disk format (qcow2, vmdk, raw) or a tarball's (tar, tar.gz, ...) */
  format: string
  /** the pin (the recipe's or --base-sha256); none for a --base-file the user vouches for */
  sha256?: string
  /** --base-file */
  file?: string
}

export interface ImageBaseIo {
  cacheDir: string
  work: string
  progress: (line: string) => void
  log: (line: string) => void
  signal?: AbortSignal
  logFile?: string
}

/**
 * An image base as rootfs.tar at `output` (issue #29). The bytes are taken into the cache once: a
 * download, or a copy of --base-file (pinned: kept under the download's name; unpinned: in the work
 * dir). Everything after (the pin check, the header inspection, the conversion, the filesystem read)
 * reads that copy, so the file cannot change between the check and the use. A file whose bytes are
 * refused (an InputError: a hostile or unreadable image) is removed, so no refused bytes wait in the
 * cache under a name the next build would find. Returns where the root came from, for the record.
 */
export async function imageBaseToRootfs(base: ImageBaseSource, output: string, io: ImageBaseIo): Promise<string> {
  let file: string
  if (base.sha256) {
    file = await pinnedFile(
      {url: base.url, sha256: base.sha256, pinnedBy: 'recipe.base.sha256 (or --base-sha256)', cacheDir: io.cacheDir, given: base.file ? {path: base.file, flag: '--base-file'} : undefined},
      {signal: io.signal, progress: io.progress},
    )
  } else if (base.file) {
    io.progress(`copying ${base.file} into the work dir`)
    file = await copyIn(base.file, join(io.work, 'base-file'), '--base-file')
    // what the user vouched for, named by the bytes read
    io.log(`--base-file ${base.file}: sha256 ${await sha256File(file)}`)
  } else {
    throw new BugError('imageBaseToRootfs: an image base with neither a pin nor a --base-file, which the base stage refuses first')
  }
  try {
    if (!isDiskFormat(base.format)) {
      io.progress(`unpacking ${base.format}`)
      await decompressRootfs(file, base.format, output, {signal: io.signal})
      return ''
    }
    const read = await diskToRootfs(file, base.format, output, io.work, {progress: io.progress, signal: io.signal, logFile: io.logFile, shownAs: base.file ?? base.url})
    io.log(`read ${read.where} of the ${base.format} disk: ${read.entries} entries, ${read.files} files (${read.bytes} bytes), ${read.hardlinks} hardlinks, ${read.xattrs} xattrs`)
    if (read.sockets.length) io.log(`left out ${read.sockets.length} sockets (tar has no form for them): ${read.sockets.slice(0, 5).join(', ')}`)
    return ` (${read.where})`
  } catch (e) {
    if (e instanceof CvmError && e.exitCode === ExitCode.input) await rm(file, {force: true})
    throw e
  } finally {
    // an unpinned copy is this build's alone
    if (!base.sha256) await rm(file, {force: true})
  }
}
