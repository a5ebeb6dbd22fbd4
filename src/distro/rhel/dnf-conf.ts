/**
 * /etc/dnf/dnf.conf with the kernel packages excluded: dnf (and yum, whose yum.conf links here on
 * RHEL 8) then never installs or updates them, so no distro kernel lands beside the CVM kernel.
 *
 * The image's own file is kept and only its [main] section's exclude list changes: an existing
 * `excludepkgs=` (or its older name `exclude=`, with continuation lines) gains the packages it
 * lacks, else `excludepkgs=` is added at the top of [main]; a root without the file gets one that
 * holds just that.
 */
export const DNF_CONF = 'etc/dnf/dnf.conf'
/** Debian's python3-dnf: dnf's own config parser (libdnf), which the tests read a built disk's dnf.conf back with */
export const DNF_PYTHON = '/usr/lib/python3/dist-packages/dnf/__init__.py'

const MARK = '# cvm-image: the CVM kernel boots from the ESP; no distro kernel package may replace it'

export function dnfConfWithExclude(conf: string | undefined, packages: readonly string[]): string {
  if (conf === undefined) return `[main]\n${MARK}\nexcludepkgs=${packages.join(' ')}\n`
  const lines = conf.split('\n')
  const main = lines.findIndex((l) => /^\s*\[main\]\s*$/.test(l))
  if (main < 0) return `${conf}${conf.endsWith('\n') || conf === '' ? '' : '\n'}\n[main]\n${MARK}\nexcludepkgs=${packages.join(' ')}\n`
  let end = lines.findIndex((l, i) => i > main && /^\s*\[.*\]\s*$/.test(l))
  if (end < 0) end = lines.length
  const at = lines.findIndex((l, i) => i > main && i < end && /^(exclude|excludepkgs)\s*[=:]/.test(l))
  if (at < 0) {
    lines.splice(main + 1, 0, MARK, `excludepkgs=${packages.join(' ')}`)
    return lines.join('\n')
  }
  // the value and its continuation lines (indented, non-empty) are one list, split on spaces and commas
  let last = at
  while (last + 1 < end && /^\s+\S/.test(lines[last + 1])) last++
  const key = /^(exclude|excludepkgs)/.exec(lines[at])![1]
  const value = [lines[at].replace(/^(exclude|excludepkgs)\s*[=:]/, ''), ...lines.slice(at + 1, last + 1)].join(' ')
  const have = value.split(/[\s,]+/).filter(Boolean)
  const all = [...have, ...packages.filter((p) => !have.includes(p))]
  lines.splice(at, last - at + 1, MARK, `${key}=${all.join(' ')}`)
  return lines.join('\n')
}
