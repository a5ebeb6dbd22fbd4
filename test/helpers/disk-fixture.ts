import {createHash} from 'node:crypto'
import {open, truncate, utimes, writeFile} from 'node:fs/promises'

import {run} from '../../src/util/exec.js'
import {sha256File} from '../../src/util/fsx.js'

/**
 * A sparse disk of sizeGiB with a real GPT (sfdisk: an ESP and a Linux root) and a block of
 * deterministic bytes in each partition, so its sha256 is known and conversions have data to carry.
 */
export async function makeGptDisk(path: string, sizeGiB = 1, seed = 'cvm-disk', opts: {uki?: string} = {}): Promise<{path: string; sha256: string; size: number}> {
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
  if (opts.uki) await putUkiOnEsp(path, opts.uki)
  return {path, sha256: await sha256File(path), size: sizeGiB * 1024 ** 3}
}

/** deterministic bytes from a seed (sha256 in counter mode) */
export function pseudoRandom(seed: string, length: number): Buffer {
  const out = Buffer.alloc(length)
  for (let i = 0, n = 0; i < length; i += 32, n++) createHash('sha256').update(`${seed}:${n}`).digest().copy(out, i)
  return out
}

/** the ESP makeGptDisk partitions: from LBA 2048, 204800 sectors */
const ESP_OFFSET = 2048 * 512
const ESP_KIB = (204800 * 512) / 1024

/**
 * Makes the ESP a FAT32 file system holding uki at \EFI\BOOT\BOOTX64.EFI, as assemble's disk has it,
 * written in place (only its metadata and the file: the disk stays sparse). Fixed serial and times.
 */
export async function putUkiOnEsp(disk: string, uki: string): Promise<void> {
  const env = {SOURCE_DATE_EPOCH: '1700000000', LC_ALL: 'C', MTOOLS_SKIP_CHECK: '1'}
  await run('mkfs.vfat', ['--invariant', '-F', '32', '-S', '512', '-s', '1', '-n', 'ESP', '-i', '0badcafe', '--offset', String(ESP_OFFSET / 512), disk, String(ESP_KIB)], {what: 'make the test disk\'s ESP', env})
  const img = `${disk}@@${ESP_OFFSET}`
  await run('mmd', ['-i', img, '::/EFI', '::/EFI/BOOT'], {what: 'make the ESP directories', env})
  await utimes(uki, 1_700_000_000, 1_700_000_000)
  await run('mcopy', ['-m', '-i', img, uki, '::/EFI/BOOT/BOOTX64.EFI'], {what: 'copy the UKI onto the ESP', env})
}
