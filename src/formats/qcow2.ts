import {rm} from 'node:fs/promises'

import {run} from '../util/exec.js'
import {tempSibling} from '../util/fsx.js'
import {renameInto} from './staging.js'

/**
 * Converts a raw disk to qcow2. qemu-img writes no timestamps into qcow2, so equal raw bytes give
 * equal qcow2 bytes (checked by a test); no compression, so it stays fast and deterministic.
 */
export async function rawToQcow2(raw: string, out: string, opts: {signal?: AbortSignal} = {}): Promise<void> {
  const tmp = tempSibling(out)
  try {
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, tmp], {what: 'convert the disk to qcow2', signal: opts.signal})
    await renameInto(tmp, out)
  } finally {
    await rm(tmp, {force: true})
  }
}
