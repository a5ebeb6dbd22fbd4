import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import Handlebars from 'handlebars'

import {InputError} from '../errors.js'
import {fragmentAssignments} from './dotconfig.js'
import type {Feature} from './features.js'
import {atLeast, formatVersion, lineOf, type KernelVersion} from './version.js'

/** The lean CVM profile: allnoconfig plus this fragment (a Debian userspace boots on it with no initrd). */
export const LEAN_PROFILE = 'lean.config.hbs'

/** On a distribution's config: drop what only the distribution's own build has (its signing keys, debug info). */
export const DISTRO_FIXUPS = 'distro.config.hbs'

export interface RenderedFragment {
  /** template name under templates/kernel/ */
  name: string
  text: string
}

export interface FragmentContext {
  version: KernelVersion
}

/**
 * Renders a config fragment. Templates see {{version}}, {{line}}, {{major}}, {{minor}}, {{patch}}
 * and the helper (atLeast "5.19") for options a kernel line names differently.
 */
export async function renderFragment(templatesDir: string, name: string, ctx: FragmentContext): Promise<RenderedFragment> {
  const file = join(templatesDir, 'kernel', name)
  if (!existsSync(file)) throw new InputError(`config fragment ${name} not found at ${file}`, {hint: 'add the template, or fix the feature\'s "fragment" field'})
  const hb = Handlebars.create()
  hb.registerHelper('atLeast', (min: string) => atLeast(ctx.version, String(min)))
  const template = hb.compile(await readFile(file, 'utf8'), {noEscape: true, strict: true})
  const text = template({
    version: formatVersion(ctx.version),
    line: lineOf(ctx.version),
    major: ctx.version.major,
    minor: ctx.version.minor,
    patch: ctx.version.patch,
  })
  return {name, text}
}

/**
 * The templates a configuration applies, in order: the lean profile (base lean) or the distro
 * fixups (base distro), then each feature's. Base minimal and defconfig add none of their own.
 */
export function fragmentNames(base: string, features: Feature[]): string[] {
  return [...(base === 'lean' ? [LEAN_PROFILE] : base === 'distro' ? [DISTRO_FIXUPS] : []), ...new Set(features.map((f) => f.fragment))]
}

/** The fragments of fragmentNames, rendered for the tree's version. */
export async function renderFragments(templatesDir: string, base: string, features: Feature[], ctx: FragmentContext): Promise<RenderedFragment[]> {
  return Promise.all(fragmentNames(base, features).map((n) => renderFragment(templatesDir, n, ctx)))
}

/** A fragment of the recipe's own kernel.config.options. */
export function optionsFragment(options: Record<string, string>): RenderedFragment {
  const text = Object.entries(options)
    .map(([k, v]) => (v === 'n' ? `# ${k} is not set` : `${k}=${/^(y|m|-?\d+|0x[0-9a-fA-F]+)$/.test(v) ? v : JSON.stringify(v)}`))
    .join('\n')
  return {name: 'recipe kernel.config.options', text: text + '\n'}
}

export interface OptionRequirement {
  option: string
  /** accepted values */
  want: string[]
  /** who asks for it: a fragment or a feature */
  from: string
}

/**
 * Everything the final .config must show: every assignment of every fragment (the last one of an
 * option wins, as in Kconfig) and each feature's required values.
 */
export function requirements(fragments: RenderedFragment[], features: Feature[]): OptionRequirement[] {
  const byOption = new Map<string, OptionRequirement>()
  for (const f of fragments) {
    for (const a of fragmentAssignments(f.text)) byOption.set(a.option, {option: a.option, want: [a.value], from: `${f.name}:${a.line}`})
  }
  for (const feat of features) {
    for (const [option, want] of Object.entries(feat.requires)) {
      const prior = byOption.get(option)
      // a fragment's exact value is stricter than a feature's list unless they disagree
      if (prior && want.includes(prior.want[0])) continue
      byOption.set(option, {option, want, from: `feature ${feat.name}`})
    }
  }
  return [...byOption.values()]
}
