import {copyFile, mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {InputError} from '../errors.js'
import {sha256} from '../util/fsx.js'
import {parseDotConfig, valueOf} from './dotconfig.js'
import type {RenderedFragment, OptionRequirement} from './fragments.js'
import {explainDrop, readKconfig, renderDrop} from './kconfig.js'
import {kmake} from './kbuild.js'

export type ConfigBase = 'lean' | 'minimal' | 'defconfig' | 'distro'

/** the make target each base starts from (distro: the distribution's file instead) */
const BASE_TARGET = {lean: 'allnoconfig', minimal: 'allnoconfig', defconfig: 'defconfig'} as const

export interface ConfigureRequest {
  tree: string
  /** an empty scratch directory for O= */
  objdir: string
  base: ConfigBase
  /** for base distro: the distribution's own config for this kernel */
  distroConfig?: string
  fragments: RenderedFragment[]
  requirements: OptionRequirement[]
  logFile?: string
  signal?: AbortSignal
}

export interface ConfiguredKernel {
  config: string
  digest: string
  /** every option proven to have its required value */
  verified: string[]
}

/**
 * base config + fragments -> olddefconfig -> proof that every required option kept its value.
 * An option Kconfig dropped is an error naming it and the dependency that is not met.
 */
export async function configureKernel(r: ConfigureRequest): Promise<ConfiguredKernel> {
  await mkdir(r.objdir, {recursive: true})
  const dotconfig = join(r.objdir, '.config')
  if (r.base === 'distro') {
    if (!r.distroConfig) {
      throw new InputError('config base "distro" needs the distribution\'s own config, and this source has none', {
        hint: 'use base lean or defconfig, or a debian-package source (its linux-config package is fetched with it)',
      })
    }
    await copyFile(r.distroConfig, dotconfig)
  } else {
    const target = BASE_TARGET[r.base]
    await kmake({tree: r.tree, objdir: r.objdir, targets: [target], logFile: r.logFile, signal: r.signal, what: `make ${target}`})
  }
  // Later assignments override earlier ones in Kconfig: fragments are appended in order.
  const base = await readFile(dotconfig, 'utf8')
  await writeFile(dotconfig, [base, ...r.fragments.map((f) => `# ---- ${f.name}\n${f.text}`)].join('\n'))
  await kmake({tree: r.tree, objdir: r.objdir, targets: ['olddefconfig'], logFile: r.logFile, signal: r.signal, what: 'make olddefconfig'})
  const config = await readFile(dotconfig, 'utf8')
  const values = parseDotConfig(config)

  const dropped = r.requirements.filter((q) => !q.want.includes(valueOf(values, q.option)))
  if (dropped.length) {
    const db = readKconfig(r.tree)
    const lines = dropped.map((q) => {
      const why = renderDrop(explainDrop(db, q.option, values, q.want))
      return `  ${q.option}: wanted ${q.want.map(show).join(' or ')} (${q.from}), got ${show(valueOf(values, q.option))}: ${why}`
    })
    throw new InputError(`kernel config: ${dropped.length} required option${dropped.length === 1 ? '' : 's'} dropped by Kconfig: ${dropped.map((q) => q.option).join(', ')}`, {
      details: lines,
      hint: 'set the unmet dependency in a fragment (templates/kernel/) or the recipe\'s kernel.config.options, or drop the feature this kernel cannot have',
    })
  }
  return {config, digest: sha256(config), verified: r.requirements.map((q) => q.option).sort()}
}

function show(value: string): string {
  return value === '' ? '""' : value
}
