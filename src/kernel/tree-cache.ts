import {existsSync} from 'node:fs'
import {mkdir, rename, rm} from 'node:fs/promises'
import {join} from 'node:path'

import {InputError} from '../errors.js'
import {run} from '../util/exec.js'
import type {SourceIO} from './source-io.js'

/** The tree for a digest, unpacked by fill into a temp directory and renamed into place once complete. */
export async function cachedTree(io: SourceIO, digest: string, fill: (dest: string) => Promise<void>): Promise<string> {
  const tree = join(io.cacheDir, 'kernel-trees', digest)
  if (existsSync(join(tree, 'Makefile'))) return tree
  const tmp = `${tree}.tmp-${process.pid}`
  await rm(tmp, {recursive: true, force: true})
  await mkdir(tmp, {recursive: true})
  io.progress('unpacking the source tree')
  try {
    await fill(tmp)
  } catch (e) {
    // a tree that failed half way (a patch of a queue that does not apply) is not kept
    await rm(tmp, {recursive: true, force: true})
    throw e
  }
  await rename(tmp, tree).catch(async (e) => {
    // another build unpacked the same digest first: use its tree
    if (!existsSync(join(tree, 'Makefile'))) throw e
    await rm(tmp, {recursive: true, force: true})
  })
  return tree
}

/**
 * Unpacks a kernel tarball whose entries sit under one top directory (linux-6.1/...), or only the
 * top directory `member` of an archive of several trees.
 */
export async function untar(file: string, dest: string, io: SourceIO, member?: string): Promise<void> {
  await mkdir(dest, {recursive: true})
  // zstd archives compressed with long-distance matching need the window given when reading
  const zstd = /\.zst$/.test(file) ? ['--use-compress-program=zstd -d --long=31'] : []
  // GNU tar refuses members with ".." and strips leading "/": nothing lands outside dest
  const r = await run('tar', [...zstd, '-xf', file, '-C', dest, '--strip-components=1', '--no-same-owner', '--no-same-permissions', ...(member ? [`${member}/`] : [])], {
    what: `unpack ${file}${member ? ` (${member}/)` : ''}`,
    logFile: io.logFile,
    signal: io.signal,
    reject: false,
  })
  if (r.exitCode !== 0) {
    const notFound = member && /Not found in archive/.test(r.stderr)
    throw new InputError(notFound ? `${file} has no top folder ${member}/` : `unpack ${file} failed: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`, {
      hint: notFound ? 'fix recipe.kernel.source.member (tar -tf lists the archive\'s folders)' : 'check that the file is a complete tar archive',
    })
  }
  if (!existsSync(join(dest, 'Makefile'))) throw new InputError(`${file}: no Makefile at the top of the tree${member ? ` ${member}/` : ''}`, {hint: 'the archive is not a Linux source tarball'})
}
