import {open, rename} from 'node:fs/promises'

/** fsyncs a finished file and renames it to its final name, so a crash never leaves a partial one there. */
export async function renameInto(tmp: string, final: string): Promise<void> {
  const fh = await open(tmp, 'r')
  await fh.sync()
  await fh.close()
  await rename(tmp, final)
}
