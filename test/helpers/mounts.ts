import {readdirSync, readFileSync, readlinkSync} from 'node:fs'
import {join} from 'node:path'

/** A mount some process can still see: which process, its mount namespace, where, what. */
export interface SeenMount {
  pid: number
  /** the process's mount namespace (`mnt:[inode]`) */
  ns: string
  /** the mount point as a path from this process's root: the process's root joined with its own view */
  where: string
  fstype: string
  source: string
}

/** mountinfo escapes space, tab, newline and backslash as \ooo */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))

function tryRead(f: () => string): string | undefined {
  try {
    return f()
  } catch {
    return undefined
  }
}

/**
 * Every mount at or under `dir` that any process on the host can see, in its own mount namespace
 * (a child run as root by src/util/exec.ts has one), not only in this process's
 * /proc/self/mountinfo, where a child's mounts never show. A mount lives as long as its namespace,
 * and a namespace as long as a process is in it: once no process sees a mount under dir, nothing is
 * left mounted there. (A namespace pinned by a bind mount of its nsfs file, with no process in
 * it, is not seen; the build makes none.) Reading other processes' mountinfo needs root.
 */
export function mountsUnder(dir: string): SeenMount[] {
  const found: SeenMount[] = []
  const seen = new Set<string>()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const pid = Number(name)
    const ns = tryRead(() => readlinkSync(`/proc/${pid}/ns/mnt`))
    const root = tryRead(() => readlinkSync(`/proc/${pid}/root`))
    const info = tryRead(() => readFileSync(`/proc/${pid}/mountinfo`, 'utf8'))
    if (ns === undefined || root === undefined || info === undefined) continue // gone meanwhile
    // processes of one namespace and root see the same mounts
    if (seen.has(`${ns} ${root}`)) continue
    seen.add(`${ns} ${root}`)
    for (const line of info.split('\n')) {
      if (!line) continue
      const [pre, post = ''] = line.split(' - ')
      const point = unescape(pre!.split(' ')[4] ?? '')
      // a chrooted process (mmdebstrap's) names its mounts from its root
      const where = root === '/' ? point : join(root, point)
      if (where !== dir && !where.startsWith(dir.endsWith('/') ? dir : `${dir}/`)) continue
      const [fstype = '', source = ''] = post.split(' ')
      found.push({pid, ns, where, fstype, source: unescape(source)})
    }
  }
  return found
}
