import {createReadStream, createWriteStream} from 'node:fs'
import {copyFile, rename, rm, symlink} from 'node:fs/promises'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {createGunzip} from 'node:zlib'

import {InputError} from '../errors.js'
import {run} from '../util/exec.js'

/** A base archive (tar, tar.gz, tar.xz, tar.zst) as an uncompressed tarball, streamed. Disk images go to diskToRootfs. */
export async function decompressRootfs(source: string, format: string, output: string, work: string): Promise<void> {
  switch (format) {
    case 'tar':
      await copyFile(source, output)
      return
    case 'tar.gz':
      await pipeline(createReadStream(source), createGunzip(), createWriteStream(output)).catch((e: unknown) => {
        throw new InputError(`${source} is not a valid gzip file: ${(e as Error).message}`, {cause: e})
      })
      return
    case 'tar.zst':
      await run('zstd', ['--decompress', '--quiet', '--force', '-o', output, source], {what: `decompress ${source}`})
      return
    case 'tar.xz': {
      // xz has no output option: decompress a link to the source beside the output, then move the result
      const link = join(work, 'base.tar.xz')
      await rm(link, {force: true})
      await symlink(source, link)
      await run('xz', ['--decompress', '--keep', '--force', '--threads=0', link], {what: `decompress ${source}`})
      await rename(join(work, 'base.tar'), output)
      await rm(link, {force: true})
      return
    }
    default:
      // disk images (qcow2, raw, vmdk) are read by diskToRootfs (disk-base.ts)
      throw new InputError(`base format "${format}" is not a tarball (tar, tar.gz, tar.xz, tar.zst)`)
  }
}
