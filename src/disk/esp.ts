import {utimes} from 'node:fs/promises'

import {run} from '../util/exec.js'

/** The EFI system partition as a FAT32 image file, made with mkfs.vfat and filled with mtools: no mount. */

export interface EspFile {
  /** host file */
  source: string
  /** path on the ESP, e.g. /EFI/BOOT/BOOTX64.EFI */
  dest: string
}

export async function makeEsp(opts: {image: string; sizeBytes: number; serial: string; files: EspFile[]; sourceDateEpoch: number; logFile?: string}): Promise<void> {
  const env = {SOURCE_DATE_EPOCH: String(opts.sourceDateEpoch), LC_ALL: 'C', MTOOLS_SKIP_CHECK: '1'}
  // --invariant pins the times mkfs.vfat would take from the clock; -i sets the serial we derived.
  await run('mkfs.vfat', ['--invariant', '-F', '32', '-S', '512', '-n', 'ESP', '-i', opts.serial, '-C', opts.image, String(opts.sizeBytes / 1024)], {
    what: 'make the ESP filesystem',
    env,
    logFile: opts.logFile,
  })
  const dirs = new Set<string>()
  for (const f of opts.files) {
    const parts = f.dest.split('/').filter(Boolean)
    for (let i = 1; i < parts.length; i++) dirs.add('/' + parts.slice(0, i).join('/'))
  }
  const sortedDirs = [...dirs].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b))
  if (sortedDirs.length) await run('mmd', ['-i', opts.image, ...sortedDirs.map((d) => `::${d}`)], {what: 'make ESP directories', env, logFile: opts.logFile})
  for (const f of opts.files) {
    // mcopy -m keeps the source's mtime: set it to SOURCE_DATE_EPOCH first
    await utimes(f.source, opts.sourceDateEpoch, opts.sourceDateEpoch)
    await run('mcopy', ['-m', '-o', '-i', opts.image, f.source, `::${f.dest}`], {what: `copy ${f.dest} onto the ESP`, env, logFile: opts.logFile})
  }
}
