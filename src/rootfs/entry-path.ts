/**
 * Names inside a rootfs tarball, in one canonical form: relative, no "./", no trailing "/",
 * "" for the root itself. Everything here is lexical: nothing touches the host filesystem.
 */

/** ext4 refuses longer components; the kernel refuses longer paths. */
const MAX_COMPONENT_BYTES = 255
const MAX_PATH_BYTES = 4095

export type PathProblem = string

/** The canonical name of a tar entry, or the reason it is refused. */
export function canonicalEntryName(raw: string): {name: string} | {problem: PathProblem} {
  if (raw.includes('\0')) return {problem: 'contains a NUL byte'}
  if (raw.startsWith('/')) return {problem: 'is an absolute path'}
  const parts: string[] = []
  for (const part of raw.split('/')) {
    if (part === '' || part === '.') continue
    if (part === '..') return {problem: 'climbs out of the root with ".."'}
    if (Buffer.byteLength(part) > MAX_COMPONENT_BYTES) return {problem: `has a component longer than ${MAX_COMPONENT_BYTES} bytes`}
    parts.push(part)
  }
  const name = parts.join('/')
  if (Buffer.byteLength(name) > MAX_PATH_BYTES) return {problem: `is longer than ${MAX_PATH_BYTES} bytes`}
  return {name}
}

/**
 * Where a symlink at `name` pointing to `target` lands, as a canonical name, or undefined when
 * a relative target climbs above the root. Absolute targets resolve inside the image's root.
 */
export function symlinkDestination(name: string, target: string): string | undefined {
  const start = target.startsWith('/') ? [] : name.split('/').slice(0, -1).filter(Boolean)
  const parts = [...start]
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue
    if (part === '..') {
      // "/.." is "/" in Linux; a relative link that climbs above the root escapes it
      if (!parts.length) {
        if (target.startsWith('/')) continue
        return undefined
      }
      parts.pop()
      continue
    }
    parts.push(part)
  }
  return parts.join('/')
}

/** The parent directories of a canonical name, outermost first ("a/b/c" -> ["a", "a/b"]). */
export function parentsOf(name: string): string[] {
  const parts = name.split('/')
  const out: string[] = []
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join('/'))
  return out
}

/**
 * A recipe glob as a RegExp over canonical names: `*` and `?` stay within one component,
 * `**` spans components. A leading "/" or "./" is ignored.
 */
export function globToRegExp(glob: string): RegExp {
  const g = glob.replace(/^\.?\/+/, '').replace(/\/+$/, '')
  let re = ''
  for (let i = 0; i < g.length; i++) {
    const c = g[i]
    if (c === '*' && g[i + 1] === '*') {
      // "**/" also matches nothing, so "a/**/b" matches "a/b"
      if (g[i + 2] === '/') {
        re += '(?:.*/)?'
        i += 2
      } else {
        re += '.*'
        i += 1
      }
    } else if (c === '*') re += '[^/]*'
    else if (c === '?') re += '[^/]'
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&')
  }
  return new RegExp(`^${re}$`)
}

/** Matches a name or any of its parents against a set of globs: removing a directory removes its subtree. */
export class RemovalGlobs {
  private readonly res: RegExp[]
  constructor(readonly globs: readonly string[]) {
    this.res = globs.map(globToRegExp)
  }

  /** the glob that removes this name, if any */
  match(name: string): string | undefined {
    if (!name) return undefined
    for (const candidate of [...parentsOf(name), name]) {
      const i = this.res.findIndex((r) => r.test(candidate))
      if (i >= 0) return this.globs[i]
    }
    return undefined
  }
}
