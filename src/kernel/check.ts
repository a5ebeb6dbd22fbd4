import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'

import {InputError} from '../errors.js'
import {parseDotConfig, valueOf, type DotConfig} from './dotconfig.js'
import {loadFeatures, type Feature} from './features.js'
import {atLeast, configVersion, contains, formatVersion, parseVersion, type KernelVersion} from './version.js'

export type FeatureStatus = 'supported' | 'needs-backport' | 'needs-config'

export interface FeatureVerdict {
  feature: string
  title: string
  status: FeatureStatus
  /** the first mainline release with the feature (and stable releases that carry it) */
  mainline: string
  stable: string[]
  /** options whose value does not satisfy the feature (only when a .config was given) */
  missing: Array<{option: string; want: string[]; have: string}>
  /** why, in a line */
  reason: string
}

export interface KernelCheckResult {
  /** what was checked: a version or a .config path */
  subject: string
  version: string
  configChecked: boolean
  features: FeatureVerdict[]
}

/**
 * For a kernel a user has (a version, or a .config), says per CVM feature whether the kernel
 * supports it, needs a backport (its version predates the feature), or needs config options.
 */
export async function checkKernel(kernelsDir: string, subject: string, featureNames?: readonly string[]): Promise<KernelCheckResult> {
  let version: KernelVersion
  let config: DotConfig | undefined
  if (/^v?\d+\.\d+(\.\d+)?([-.+~].*)?$/.test(subject) && !existsSync(subject)) {
    version = parseVersion(subject)
  } else {
    if (!existsSync(subject)) {
      throw new InputError(`"${subject}" is neither a kernel version nor a file`, {hint: 'give a version such as 5.10.223, or the path of a kernel .config'})
    }
    const text = await readFile(subject, 'utf8')
    const v = configVersion(text)
    if (!v) {
      throw new InputError(`${subject}: no "# Linux/<arch> <version> Kernel Configuration" header`, {
        hint: 'give a .config written by the kernel build (make olddefconfig writes the header), or give the version itself',
      })
    }
    version = v
    config = parseDotConfig(text)
  }
  const features = await loadFeatures(kernelsDir, featureNames)
  return {subject, version: formatVersion(version), configChecked: config !== undefined, features: features.map((f) => judge(f, version, config))}
}

export function judge(f: Feature, version: KernelVersion, config: DotConfig | undefined): FeatureVerdict {
  const base = {feature: f.name, title: f.title, mainline: f.mainline, stable: f.stable, missing: [] as FeatureVerdict['missing']}
  if (!contains(version, f.mainline, f.stable)) {
    const stable = f.stable.length ? ` or stable ${f.stable.join(', ')}` : ''
    return {...base, status: 'needs-backport', reason: `${formatVersion(version)} predates mainline ${f.mainline}${stable}`}
  }
  const since = atLeast(version, f.mainline) ? `mainline ${f.mainline}` : `stable ${f.stable.find((s) => s.startsWith(`${version.major}.${version.minor}.`)) ?? f.stable.join(', ')}`
  if (!config) return {...base, status: 'supported', reason: `in ${since} (options not checked: give a .config)`}
  const missing = Object.entries(f.requires)
    .map(([option, want]) => ({option, want, have: valueOf(config, option)}))
    .filter((m) => !m.want.includes(m.have))
  if (missing.length) {
    return {...base, missing, status: 'needs-config', reason: missing.map((m) => `${m.option}=${m.have} (needs ${m.want.join(' or ')})`).join(', ')}
  }
  return {...base, status: 'supported', reason: `${formatVersion(version)} has it and the config sets ${Object.keys(f.requires).join(', ')}`}
}

/** One line per feature, for people. */
export function renderCheck(r: KernelCheckResult): string {
  const width = Math.max(...r.features.map((f) => f.feature.length))
  const head = `kernel ${r.version}${r.configChecked ? ` (${r.subject})` : ''}`
  return [head, ...r.features.map((f) => `  ${f.feature.padEnd(width)}  ${f.status.padEnd(14)}  ${f.reason}`)].join('\n')
}
