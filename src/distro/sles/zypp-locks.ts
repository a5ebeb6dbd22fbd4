/**
 * /etc/zypp/locks with a lock on each kernel package, as `zypper addlock <name>` writes it: zypper
 * then never installs or updates them, so no distro kernel lands beside the CVM kernel. The image's
 * own locks are kept; a package it already locks by that name is not locked twice.
 */
export const ZYPP_LOCKS = 'etc/zypp/locks'

export function zyppLocksWith(locks: string | undefined, packages: readonly string[]): string {
  const existing = locks ?? ''
  const locked = new Set([...existing.matchAll(/^solvable_name:\s*(\S+)\s*$/gm)].map((m) => m[1]))
  const added = packages
    .filter((p) => !locked.has(p))
    .map((p) => `type: package\nmatch_type: glob\ncase_sensitive: on\nsolvable_name: ${p}\n`)
  if (added.length === 0) return existing
  const head = existing === '' ? '' : existing.endsWith('\n\n') ? existing : existing.endsWith('\n') ? `${existing}\n` : `${existing}\n\n`
  return `${head}# cvm-image: the CVM kernel boots from the ESP; no distro kernel package may replace it\n${added.join('\n')}\n`
}
