/**
 * SUSE's series.conf: the patch queue of a kernel-source package, one patch name per entry, each
 * entry guarded by conditions on symbols (the `guards` format of SUSE's kernel-source repository,
 * described in its scripts/guards and series.conf's header):
 *
 *   +sym   include if sym is defined        -sym   exclude if sym is defined
 *   +!sym  include if sym is not defined    -!sym  exclude if sym is not defined
 *   -      exclude                          (no guard) include
 *
 * Guards are read left to right and the last one that matches decides. When none matches, an entry
 * whose first guard excludes (-...) is included and one whose first guard includes (+...) is not.
 */

export interface SuseSeriesLine {
  /** the patch, as series.conf names it: patches.<group>/<file> */
  patch: string
  /** the guards before it on its line, in order */
  guards: string[]
  /** the file it is listed in: series.conf, or patches.addon/series */
  file: string
  /** the line it is on (the first, for a line continued with a backslash) */
  line: number
}

/**
 * The entries of series.conf in order. A `#` at the start of a line or after blanks starts a
 * comment; a backslash at the end of a line continues it on the next; a line may hold several
 * names, each guarded by all guards before it on the line.
 */
export function parseSeriesConf(text: string, file = 'series.conf'): SuseSeriesLine[] {
  const entries: SuseSeriesLine[] = []
  let logical = ''
  let first = 0
  const lines = text.split('\n')
  lines.forEach((raw, i) => {
    const uncommented = raw.replace(/(^|\s)#.*$/, '$1')
    if (!logical) first = i + 1
    if (/\\$/.test(uncommented) && i < lines.length - 1) {
      logical += `${uncommented.slice(0, -1)} `
      return
    }
    logical += uncommented
    const guards: string[] = []
    for (const token of logical.split(/\s+/).filter(Boolean)) {
      if (token.startsWith('+') || token.startsWith('-')) guards.push(token)
      else entries.push({patch: token, guards: [...guards], file, line: first})
    }
    logical = ''
  })
  return entries
}

/** Whether an entry with these guards is applied when exactly `symbols` are defined. */
export function guardsSelect(guards: readonly string[], symbols: ReadonlySet<string>): boolean {
  if (guards.length === 0) return true
  let selected = guards[0].startsWith('-')
  for (const guard of guards) {
    const include = guard[0] === '+'
    const negated = guard[1] === '!'
    const symbol = guard.slice(negated ? 2 : 1)
    const matches = negated ? !symbols.has(symbol) : symbol === '' || symbols.has(symbol)
    if (matches) selected = include
  }
  return selected
}

/** The entries applied when exactly `symbols` are defined, in series order. */
export function selectedPatches(entries: readonly SuseSeriesLine[], symbols: ReadonlySet<string>): SuseSeriesLine[] {
  return entries.filter((e) => guardsSelect(e.guards, symbols))
}

/**
 * The symbols the series is read with. SUSE's kernel specs (rpm/kernel-source.spec.in and
 * rpm/kernel-binary.spec.in, %prep) apply series.conf with the words of the package's
 * `extra-symbols` file only, for every architecture and flavour: the architecture (arch-symbols)
 * and the flavour select the config (config.conf, config/<arch>/<flavour>), not the patches, so
 * one source tree serves every kernel-<flavour> package.
 */
export function seriesSymbols(extraSymbols: string | undefined): Set<string> {
  return new Set((extraSymbols ?? '').split(/\s+/).filter(Boolean))
}

/** patches.addon/series (names without a folder are in patches.addon/), which SUSE's apply-patches appends to series.conf. */
export function addonEntries(text: string): SuseSeriesLine[] {
  return parseSeriesConf(text, 'patches.addon/series').map((e) => ({...e, patch: e.patch.includes('/') ? e.patch : `patches.addon/${e.patch}`}))
}
