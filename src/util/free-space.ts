import {readFileSync} from 'node:fs'
import {realpath, statfs} from 'node:fs/promises'

import {StageError} from '../errors.js'

/** The file system a path is on, as /proc/self/mountinfo names it: its mount point, type and source. */
export interface FileSystem {
  mountPoint: string
  type: string
  source: string
  /** bytes an unprivileged writer may still use */
  free: number
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)))
}

export async function fileSystemOf(path: string): Promise<FileSystem> {
  const real = await realpath(path)
  const st = await statfs(real)
  let best = {mountPoint: '/', type: 'unknown', source: 'unknown'}
  try {
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      // id parent major:minor root mount-point options [optional...] - type source super-options
      const [left, right] = line.split(' - ')
      if (!right) continue
      const mountPoint = unescapeMount(left.split(' ')[4])
      const inside = real === mountPoint || real.startsWith(mountPoint.endsWith('/') ? mountPoint : `${mountPoint}/`)
      if (inside && mountPoint.length >= best.mountPoint.length) {
        const [type, source] = right.split(' ')
        best = {mountPoint, type, source: unescapeMount(source)}
      }
    }
  } catch {
    // no /proc: the numbers alone still say what is wrong
  }
  return {...best, free: Number(st.bavail) * Number(st.bsize)}
}

/** Fails before a stage's work when the file system of `dir` has less than `bytes` free, naming it and the numbers. */
export async function requireFreeSpace(dir: string, bytes: number, what: string, hint?: string): Promise<void> {
  const fs = await fileSystemOf(dir)
  if (fs.free >= bytes) return
  throw new StageError(`not enough free space for ${what}: ${bytes} bytes needed, ${fs.free} free on the file system of ${dir} (${fs.type} ${fs.source} mounted at ${fs.mountPoint})`, {
    hint: hint ?? `free ${bytes - fs.free} bytes there, point --cache-dir (or CVM_IMAGE_CACHE) at a larger file system, or lower image.size_gib`,
  })
}
