import {Flags} from '@oclif/core'

import {BUILD_OPTION_NAMES, OPTIONS, defaultCacheDir, type OptionName, type OptionRow} from '../pipeline/options.js'

export {defaultCacheDir}

/** What a command may change of a row: its default, and a line of help for its own meaning. */
export interface FlagOverride {
  default?: string | readonly string[] | boolean | number
  help?: string
  /** the names this command took before the option had one name everywhere: still read, with a deprecation warning */
  aliases?: readonly string[]
}

// oclif's flag objects are typed per kind; a command reads options through parseOptions, typed by the table
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyFlag = any

/** The oclif flag of one row of the options table (src/pipeline/options.ts): its name, help, default and checks. */
function flagOf(row: OptionRow, o: FlagOverride = {}): AnyFlag {
  const common = {
    description: o.help ?? row.help,
    env: row.env,
    aliases: o.aliases ? [...o.aliases] : undefined,
    deprecateAliases: o.aliases ? true : undefined,
    dependsOn: row.dependsOn ? [...row.dependsOn] : undefined,
    exclusive: row.exclusive ? [...row.exclusive] : undefined,
  }
  const dflt = o.default ?? row.default
  switch (row.kind) {
    case 'boolean':
      return Flags.boolean({...common, allowNo: row.allowNo, default: dflt as boolean | undefined})
    case 'integer':
      return Flags.integer({...common, min: row.min, default: dflt as number | undefined})
    case 'string':
      return row.multiple
        ? Flags.string({...common, multiple: true, options: row.choices ? [...row.choices] : undefined, default: dflt ? [...(dflt as readonly string[])] : undefined})
        : Flags.string({...common, options: row.choices ? [...row.choices] : undefined, default: dflt as string | undefined})
  }
}

/** The oclif flags of the named rows of the options table, for a command's static flags. */
export function flagsOf<N extends OptionName>(names: readonly N[], overrides: Partial<Record<N, FlagOverride>> = {}): Record<N, AnyFlag> {
  return Object.fromEntries(names.map((n) => [n, flagOf(OPTIONS[n], overrides[n])])) as Record<N, AnyFlag>
}

/** The options that change what a build reads; build, plan and kernel check share them, so plan's keys are build's keys. */
export const BUILD_INPUTS = ['cache-dir', ...BUILD_OPTION_NAMES, 'force'] as const satisfies readonly OptionName[]
export const buildInputFlags = flagsOf(BUILD_INPUTS)

export function resolveCacheDir(parsed: string | undefined): string {
  return parsed ?? defaultCacheDir()
}
