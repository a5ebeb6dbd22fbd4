/**
 * Kconfig .config text: "CONFIG_X=y", "CONFIG_X=\"str\"", "# CONFIG_X is not set".
 * An option absent from a .config has the value "n" for our purposes.
 */
export type DotConfig = Map<string, string>

const SET = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/
const UNSET = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/

export function parseDotConfig(text: string): DotConfig {
  const out: DotConfig = new Map()
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    let m = SET.exec(line)
    if (m) {
      out.set(m[1], unquote(m[2]))
      continue
    }
    m = UNSET.exec(line)
    if (m) out.set(m[1], 'n')
  }
  return out
}

function unquote(v: string): string {
  return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1).replace(/\\(["\\])/g, '$1') : v
}

/** The value an option has in a config; absent options are "n". */
export function valueOf(config: DotConfig, option: string): string {
  return config.get(option) ?? 'n'
}

/** The assignments of a fragment in order (later ones win, as in Kconfig). */
export function fragmentAssignments(text: string): Array<{option: string; value: string; line: number}> {
  const out: Array<{option: string; value: string; line: number}> = []
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim()
    const m = SET.exec(line) ?? UNSET.exec(line)
    if (m) out.push({option: m[1], value: m[2] === undefined ? 'n' : unquote(m[2]), line: i + 1})
  })
  return out
}
