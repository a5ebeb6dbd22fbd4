import {link, readdir, rename, rm, stat} from 'node:fs/promises'
import {join} from 'node:path'

import {syncFile} from '../util/fsx.js'

/** fsyncs a finished file and renames it to its final name, so a crash never leaves a partial one there. */
export async function renameInto(tmp: string, final: string): Promise<void> {
  await syncFile(tmp)
  await rename(tmp, final)
}

/**
 * fsyncs a finished file and puts it at its final name unless a file is there already (another
 * publish of the same disk placed it meanwhile, pulled or converted): a staged file, once there, is
 * never replaced, so the sha256 kept beside it stays its own. Returns whether tmp was placed; tmp is
 * gone either way.
 */
export async function placeOnce(tmp: string, final: string): Promise<boolean> {
  try {
    await syncFile(tmp)
    await link(tmp, final)
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw e
  } finally {
    await rm(tmp, {force: true})
  }
}

/** A temp file of a conversion or a pull (tempSibling's `.<name>.tmp-…`) untouched this long was left by a publish that was killed. */
const STALE_TEMP_MS = 3_600_000

/** Removes what killed publishes left in a staging directory: their temp files, and the temp directories of GCE tarballs (`.gce-…`). */
export async function sweepStaleTemps(dir: string, now = Date.now()): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!/^\.(.+\.tmp-|gce-)/.test(name)) continue
    const path = join(dir, name)
    const st = await stat(path).catch(() => undefined)
    if (st && now - st.mtimeMs > STALE_TEMP_MS) await rm(path, {recursive: true, force: true})
  }
}
