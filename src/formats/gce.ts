import {mkdtemp, rm, stat, symlink} from 'node:fs/promises'
import {availableParallelism} from 'node:os'
import {dirname, join} from 'node:path'

import {InputError} from '../errors.js'
import {run} from '../util/exec.js'
import {renameInto} from './staging.js'

const GiB = 1024 ** 3

/**
 * Makes a GCE import tarball: one member named disk.raw, GNU tar oldgnu format, sparse, gzipped,
 * with owner, mode and mtime fixed and no name or time in the gzip header, so it is reproducible.
 */
export async function rawToGceTarball(raw: string, out: string, opts: {sourceDateEpoch: number; signal?: AbortSignal}): Promise<void> {
  const {size} = await stat(raw)
  if (size === 0 || size % GiB !== 0) {
    throw new InputError(`${raw} is ${size} bytes: GCE imports only disks of a whole number of GiB`, {hint: 'set image.size_gib in the recipe; assemble makes the disk that size'})
  }
  // the member must be called disk.raw whatever the source file is called
  const stage = await mkdtemp(join(dirname(out), '.gce-'))
  try {
    await symlink(raw, join(stage, 'disk.raw'))
    const gz = join(stage, 'image.tar.gz')
    // pigz (gzip's format on every core; its bytes do not depend on how many threads made them)
    // compresses tar's stream as tar makes it: the same bytes as gzipping the finished tar after, sooner
    const pigz = `pigz -n -p ${Math.max(1, availableParallelism())}`
    await run(
      'tar',
      [
        '--format=oldgnu',
        '--sparse',
        '--dereference',
        `--mtime=@${opts.sourceDateEpoch}`,
        '--owner=0',
        '--group=0',
        '--numeric-owner',
        '--mode=0644',
        `--use-compress-program=${pigz}`,
        '-C',
        stage,
        '-cf',
        gz,
        'disk.raw',
      ],
      {what: 'tar and gzip the disk for GCE', signal: opts.signal},
    )
    await renameInto(gz, out)
  } finally {
    await rm(stage, {recursive: true, force: true})
  }
}
