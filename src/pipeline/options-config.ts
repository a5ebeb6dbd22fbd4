import {existsSync, readFileSync} from 'node:fs'
import {homedir} from 'node:os'
import {dirname, isAbsolute, join, resolve} from 'node:path'

import {isMap, isScalar, isSeq, parseDocument, type Node} from 'yaml'

import {InputError} from '../errors.js'
import {OPTIONS, type OptionName, type OptionRow} from './options.js'

/**
 * The options config file: the third source of an option's value, after the flag and its
 * environment variable, before the row's default (docs/design.md "Options"). A team or a runner keeps
 * there what every build of it passes (a cache, a publish target, a host), in YAML, keyed by the
 * options' names as the flags spell them:
 *
 *   publish: sftp://release@images.example.com/cvm
 *   publish-host-key: SHA256:...
 *   mode: [emulated]
 *
 * It is `$CVM_IMAGE_CONFIG`, else `$XDG_CONFIG_HOME/cvm-image/config.yaml` (`~/.config/...`) when
 * that exists. Each value is checked against its row here (kind, choices, minimum) and then parsed
 * by the row's parser like a flag's; a key the table lacks is refused, as an unknown flag is.
 */
export interface OptionsConfig {
  file: string
  values: Partial<Record<OptionName, unknown>>
}

export function optionsConfigPath(env: NodeJS.ProcessEnv = process.env): {path: string; named: boolean} {
  if (env.CVM_IMAGE_CONFIG) return {path: resolve(env.CVM_IMAGE_CONFIG), named: true}
  return {path: join(env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'cvm-image', 'config.yaml'), named: false}
}

/** The config file's values, each of its row's kind; undefined when there is none. */
export function loadOptionsConfig(env: NodeJS.ProcessEnv = process.env): OptionsConfig | undefined {
  const {path, named} = optionsConfigPath(env)
  if (!existsSync(path)) {
    if (named) throw new InputError(`CVM_IMAGE_CONFIG names ${path}, which does not exist`, {hint: 'give the path of an options config file (YAML), or unset CVM_IMAGE_CONFIG'})
    return undefined
  }
  const text = readFileSync(path, 'utf8')
  const doc = parseDocument(text)
  const at = (n: Node | null | undefined) => {
    const offset = n?.range?.[0] ?? 0
    const before = text.slice(0, offset).split('\n')
    return `${path}:${before.length}:${before.at(-1)!.length + 1}`
  }
  if (doc.errors.length) throw new InputError(`${path} is not YAML: ${doc.errors[0].message}`, {hint: 'fix the options config file (CVM_IMAGE_CONFIG)'})
  if (doc.contents === null) return {file: path, values: {}}
  if (!isMap(doc.contents)) throw new InputError(`${at(doc.contents)}: the options config is not a mapping of option names to values`, {hint: 'write one `option-name: value` per line, as the flags spell them'})
  const values: Partial<Record<OptionName, unknown>> = {}
  const problems: string[] = []
  for (const pair of doc.contents.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : ''
    if (!(key in OPTIONS)) {
      problems.push(`${at(pair.key as Node)}: no option ${JSON.stringify(key)} (the options are those of the flags, without the dashes)`)
      continue
    }
    const row: OptionRow = OPTIONS[key as OptionName]
    const checked = checkValue(row, pair.value as Node, dirname(path))
    if ('problem' in checked) problems.push(`${at(pair.value as Node)}: ${key}: ${checked.problem}`)
    else values[key as OptionName] = checked.value
  }
  const hint = 'fix the options config file (CVM_IMAGE_CONFIG, else ~/.config/cvm-image/config.yaml); nothing was done'
  if (problems.length === 1) throw new InputError(problems[0], {hint})
  if (problems.length) throw new InputError(`${path}: ${problems.length} values are wrong`, {details: problems, hint})
  return {file: path, values}
}

/** A path in the file is read from the file's own folder (and ~/ from home), wherever cvm-image runs. */
function pathValue(v: string, base: string): string {
  if (v.startsWith('~/')) return join(homedir(), v.slice(2))
  if (v.startsWith('dir:')) return `dir:${pathValue(v.slice(4), base)}`
  // a URL, a SHA256: fingerprint or git's user@host:path is no path
  if (/^[a-z][a-z0-9+.-]*:/i.test(v) || /^[^/\s@]+@[^/\s:]+:/.test(v)) return v
  return isAbsolute(v) ? v : resolve(base, v)
}

type Checked = {value: unknown} | {problem: string}

/** The value as a flag would give it, or why it cannot be one. */
function checkValue(row: OptionRow, node: Node | null, base: string): Checked {
  const scalar = (n: Node | null): unknown => (isScalar(n) ? n.value : undefined)
  switch (row.kind) {
    case 'boolean': {
      const v = scalar(node)
      return typeof v === 'boolean' ? {value: v} : {problem: 'must be true or false'}
    }
    case 'integer': {
      const v = scalar(node)
      if (typeof v !== 'number' || !Number.isInteger(v)) return {problem: 'must be a whole number'}
      return row.min !== undefined && v < row.min ? {problem: `must be at least ${row.min}`} : {value: v}
    }
    case 'string': {
      const items = row.multiple && isSeq(node) ? node.items.map((n) => scalar(n as Node)) : [scalar(node)]
      if (!items.every((v) => typeof v === 'string' || typeof v === 'number')) return {problem: row.multiple ? 'must be a value or a list of values' : 'must be one value'}
      const strings = items.map((v) => (row.path ? pathValue(String(v), base) : String(v)))
      const choices = row.choices
      const bad = choices ? strings.find((v) => !choices.includes(v)) : undefined
      if (choices && bad !== undefined) return {problem: `${JSON.stringify(bad)} is not one of ${choices.join(', ')}`}
      return {value: row.multiple ? strings : strings[0]}
    }
  }
}
