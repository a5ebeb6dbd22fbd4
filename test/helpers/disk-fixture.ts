import {createHash} from 'node:crypto'
import {open, truncate, writeFile} from 'node:fs/promises'

import {run} from '../../src/util/exec.js'
import {sha256File} from '../../src/util/fsx.js'

/**
 * A sparse disk of sizeGiB with a real GPT (sfdisk: an ESP and a Linux root) and a block of
 * deterministic bytes in each partition, so its sha256 is known and conversions have data to carry.
 */
export async function makeGptDisk(path: string, sizeGiB = 1, seed = 'cvm-disk'): Promise<{path: string; sha256: string; size: number}> {
  await writeFile(path, '')
  await truncate(path, sizeGiB * 1024 ** 3)
  await run('sfdisk', ['-q', '--no-reread', '--no-tell-kernel', path], {
    input: 'label: gpt\nunit: sectors\nfirst-lba: 2048\n,204800,U\n,,L\n',
    what: 'partition the test disk',
  })
  const fh = await open(path, 'r+')
  for (const offset of [1024 * 1024, 200 * 1024 * 1024]) {
    await fh.write(pseudoRandom(`${seed}@${offset}`, 512 * 1024), 0, 512 * 1024, offset)
  }
  await fh.close()
  return {path, sha256: await sha256File(path), size: sizeGiB * 1024 ** 3}
}

/** deterministic bytes from a seed (sha256 in counter mode) */
export function pseudoRandom(seed: string, length: number): Buffer {
  const out = Buffer.alloc(length)
  for (let i = 0, n = 0; i < length; i += 32, n++) createHash('sha256').update(`${seed}:${n}`).digest().copy(out, i)
  return out
}
