import {Flags} from '@oclif/core'

import {loadOptionsConfig} from '../pipeline/options-config.js'
import {BUILD_OPTION_NAMES, OPTIONS, defaultCacheDir, parseOptions, type OptionName, type OptionRow, type ParsedOptions} from '../pipeline/options.js'

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

/**
 * The oclif flag of one row of the options table (src/pipeline/options.ts): its name, help and
 * checks. Its default is shown, not given to oclif: parseOptions applies it after the config file.
 */
function flagOf(row: OptionRow, o: FlagOverride = {}): AnyFlag {
  const help = o.help ?? row.help
  const dflt = o.default ?? row.default
  const common = {
    description: dflt === undefined || help.includes('[default') ? help : `${help} [default: ${Array.isArray(dflt) ? dflt.join(',') : String(dflt)}]`,
    env: row.env,
    aliases: o.aliases ? [...o.aliases] : undefined,
    deprecateAliases: o.aliases ? true : undefined,
    dependsOn: row.dependsOn ? [...row.dependsOn] : undefined,
    exclusive: row.exclusive ? [...row.exclusive] : undefined,
    relationships: row.needsOneOf ? [{type: 'some' as const, flags: [...row.needsOneOf]}] : undefined,
  }
  switch (row.kind) {
    case 'boolean':
      return Flags.boolean({...common, allowNo: row.allowNo})
    case 'integer':
      return Flags.integer({...common, min: row.min})
    case 'string':
      return row.multiple ? Flags.string({...common, multiple: true, options: row.choices ? [...row.choices] : undefined}) : Flags.string({...common, options: row.choices ? [...row.choices] : undefined})
  }
}

/** The options a command takes: the oclif flags of their rows, and their parser with the command's defaults. */
export interface OptionSet<N extends OptionName> {
  flags: Record<N, AnyFlag>
  /** every value parsed from the flag (or its environment variable), else the options config file, else the default */
  parse(raw: Record<string, unknown>): ParsedOptions<N>
}

/** The named rows of the options table as a command's options (`static flags = {...set.flags}`, `set.parse(flags)` first thing in run()). */
export function optionSet<N extends OptionName>(names: readonly N[], overrides: Partial<Record<N, FlagOverride>> = {}): OptionSet<N> {
  const defaults = Object.fromEntries(names.filter((n) => overrides[n]?.default !== undefined).map((n) => [n, overrides[n]!.default]))
  return {
    flags: Object.fromEntries(names.map((n) => [n, flagOf(OPTIONS[n], overrides[n])])) as Record<N, AnyFlag>,
    parse: (raw) => parseOptions(names, raw, {config: loadOptionsConfig(), defaults}),
  }
}

/** The options that change what a build reads; build and plan share them, so plan's keys are build's keys. */
export const BUILD_INPUTS = ['cache-dir', ...BUILD_OPTION_NAMES, 'force'] as const satisfies readonly OptionName[]

export function resolveCacheDir(parsed: string | undefined): string {
  return parsed ?? defaultCacheDir()
}
