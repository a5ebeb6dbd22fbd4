import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'

import {join} from 'node:path'

import {InputError} from '../errors.js'
import {parseDotConfig, valueOf, type DotConfig} from './dotconfig.js'
import {loadFeatures, type Feature} from './features.js'
import {fixInTree, loadFixes, runProbe, type Fix, type FixState} from './fixes.js'
import type {PatchRecord} from './series-apply.js'
import {atLeast, configVersion, contains, formatVersion, parseVersion, treeVersion, type KernelVersion} from './version.js'

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

export type FixStatus = FixState | 'added-by-series'

export interface FixVerdict {
  fix: string
  title: string
  commits: string[]
  status: FixStatus
  /** the tree's lines that show it, or what is missing */
  evidence: string[]
  /** the series entries that add it (recipe checks) */
  addedBy?: string[]
}

export interface KernelCheckResult {
  /** what was checked: a version, a .config path, a source tree or a recipe id */
  subject: string
  kind: 'version' | 'config' | 'tree' | 'recipe'
  version: string
  configChecked: boolean
  features: FeatureVerdict[]
  /** tree and recipe checks: each guest fix of kernels/fixes.yaml, read from the tree's content */
  fixes?: FixVerdict[]
  /** the tree that was read (a recipe's: its source as fetched) */
  tree?: string
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
  return {subject, kind: config ? 'config' : 'version', version: formatVersion(version), configChecked: config !== undefined, features: features.map((f) => judge(f, version, config))}
}

/**
 * Judges a source tree by what it contains: each fix of kernels/fixes.yaml by its probes, and each
 * feature by its probes (features without probes by the tree's version). With `patched` (the same
 * tree after the recipe's series), a fix or feature the source lacks and the patched tree has is
 * added by the series.
 */
export async function checkTree(
  kernelsDir: string,
  tree: string,
  opts: {featureNames?: readonly string[]; subject?: string; patched?: {tree: string; records: PatchRecord[]}} = {},
): Promise<KernelCheckResult> {
  if (!existsSync(join(tree, 'Makefile'))) throw new InputError(`${tree} is not a kernel source tree (no Makefile)`, {hint: 'give the top folder of a Linux source tree'})
  const version = await treeVersion(tree)
  const allFixes = await loadFixes(kernelsDir)
  const fixes: FixVerdict[] = []
  for (const f of allFixes) {
    const here = await fixInTree(tree, f)
    const base = {fix: f.id, title: f.title, commits: f.commits}
    if (here.state === 'missing' && opts.patched) {
      const after = await fixInTree(opts.patched.tree, f)
      if (after.state === 'present') {
        const by = opts.patched.records.filter((r) => r.action === 'applied' && r.fixes.includes(f.id)).map((r) => r.file ?? r.id ?? r.subject)
        fixes.push({...base, status: 'added-by-series', evidence: after.evidence, addedBy: by})
        continue
      }
    }
    fixes.push({...base, status: here.state, evidence: here.evidence})
  }
  const features: FeatureVerdict[] = []
  for (const f of await loadFeatures(kernelsDir, opts.featureNames)) {
    const before = await featureInTree(tree, f, allFixes)
    const after = opts.patched && before && !before.holds ? await featureInTree(opts.patched.tree, f, allFixes) : undefined
    const verdict = judge(f, version, undefined)
    const base = {...verdict}
    if (!before) features.push(base)
    else if (before.holds) features.push({...base, status: 'supported', reason: `the tree has it: ${before.evidence}`})
    else if (after?.holds) features.push({...base, status: 'supported', reason: `added by the recipe's series: ${after.evidence}`})
    else features.push({...base, status: 'needs-backport', reason: `${lacks(f, before.evidence)}${opts.patched ? ' (and the series does not add it)' : ''}${f.carried ? `; ${f.carried}` : ''}`})
  }
  return {subject: opts.subject ?? tree, kind: opts.patched ? 'recipe' : 'tree', version: formatVersion(version), configChecked: false, features, fixes, tree}
}

/** Why a tree lacks a feature, and what would bring it: a kernel from its mainline release on, or a backport. */
function lacks(f: Feature, evidence: string): string {
  return `the tree lacks it: ${evidence}; needs mainline ${f.mainline}${f.stable.length ? ` (or stable ${f.stable.join(', ')})` : ''} or later, or a backport`
}

/**
 * What a built kernel supports: each feature read from its (patched) tree as checkTree reads it, then
 * from its final .config as checkKernel reads one. A feature the tree shows is judged by its options
 * alone (a distro tree may carry it at an older version); one without probes by the tree's version
 * and its options. The build records this (configure's result, compile's kernel.json) and publish
 * reads the cloud flags from it (docs/design.md "Cloud flags").
 */
export async function checkBuilt(kernelsDir: string, tree: string, configText: string, featureNames: readonly string[]): Promise<KernelCheckResult> {
  const version = await treeVersion(tree)
  const config = parseDotConfig(configText)
  const allFixes = await loadFixes(kernelsDir)
  const features: FeatureVerdict[] = []
  for (const f of await loadFeatures(kernelsDir, featureNames)) {
    const here = await featureInTree(tree, f, allFixes)
    if (!here) {
      features.push(judge(f, version, config))
      continue
    }
    const base = {feature: f.name, title: f.title, mainline: f.mainline, stable: f.stable}
    if (!here.holds) {
      features.push({...base, missing: [], status: 'needs-backport', reason: lacks(f, here.evidence)})
      continue
    }
    const missing = unmet(f, config)
    if (missing.length) features.push({...base, missing, status: 'needs-config', reason: `the tree has it; the .config sets ${missing.map((m) => `${m.option}=${m.have} (needs ${m.want.join(' or ')})`).join(', ')}`})
    else features.push({...base, missing, status: 'supported', reason: `the tree has it (${here.evidence}) and the .config sets ${Object.keys(f.requires).join(', ')}`})
  }
  return {subject: tree, kind: 'tree', version: formatVersion(version), configChecked: true, features, tree}
}

function unmet(f: Feature, config: DotConfig): FeatureVerdict['missing'] {
  return Object.entries(f.requires)
    .map(([option, want]) => ({option, want, have: valueOf(config, option)}))
    .filter((m) => !m.want.includes(m.have))
}

/** A feature read from a tree: its probes, or its fixes; undefined when it has neither (judge it by version). */
async function featureInTree(tree: string, f: Feature, fixes: Fix[]): Promise<{holds: boolean; evidence: string} | undefined> {
  if (f.presentWhen) {
    const shown: string[] = []
    for (const p of f.presentWhen) {
      const r = await runProbe(tree, p)
      if (!r.holds) return {holds: false, evidence: r.evidence}
      shown.push(r.evidence)
    }
    return {holds: true, evidence: shown.join('; ')}
  }
  if (f.fixes) {
    const shown: string[] = []
    for (const id of f.fixes) {
      const fix = fixes.find((x) => x.id === id)
      if (!fix) throw new InputError(`kernels/features/${f.name}.yaml names fix ${id}, which kernels/fixes.yaml lacks`, {hint: 'fix the feature\'s fixes list'})
      const r = await fixInTree(tree, fix)
      if (r.state === 'missing') return {holds: false, evidence: `fix ${id} missing (${r.evidence[0]})`}
      shown.push(`fix ${id}`)
    }
    return {holds: true, evidence: shown.join(', ')}
  }
  return undefined
}

export function judge(f: Feature, version: KernelVersion, config: DotConfig | undefined): FeatureVerdict {
  const base = {feature: f.name, title: f.title, mainline: f.mainline, stable: f.stable, missing: [] as FeatureVerdict['missing']}
  if (!contains(version, f.mainline, f.stable)) {
    const stable = f.stable.length ? ` or stable ${f.stable.join(', ')}` : ''
    return {...base, status: 'needs-backport', reason: `${formatVersion(version)} predates mainline ${f.mainline}${stable}${f.carried ? `; ${f.carried}` : ''}`}
  }
  const since = atLeast(version, f.mainline) ? `mainline ${f.mainline}` : `stable ${f.stable.find((s) => s.startsWith(`${version.major}.${version.minor}.`)) ?? f.stable.join(', ')}`
  if (!config) return {...base, status: 'supported', reason: `in ${since} (options not checked: give a .config)`}
  const missing = unmet(f, config)
  if (missing.length) {
    return {...base, missing, status: 'needs-config', reason: missing.map((m) => `${m.option}=${m.have} (needs ${m.want.join(' or ')})`).join(', ')}
  }
  return {...base, status: 'supported', reason: `${formatVersion(version)} has it and the config sets ${Object.keys(f.requires).join(', ')}`}
}

/** One line per feature (and per fix for trees), for people. */
export function renderCheck(r: KernelCheckResult): string {
  const width = Math.max(...r.features.map((f) => f.feature.length), ...(r.fixes ?? []).map((f) => f.fix.length))
  const head = `kernel ${r.version}${r.kind === 'version' ? '' : ` (${r.kind} ${r.subject})`}`
  const lines = [head, ...r.features.map((f) => `  ${f.feature.padEnd(width)}  ${f.status.padEnd(15)}  ${f.reason}`)]
  if (r.fixes) {
    lines.push('guest fixes (kernels/fixes.yaml), read from the tree:')
    for (const f of r.fixes) {
      const why = f.status === 'added-by-series' ? `${(f.addedBy ?? []).join(', ')}: ${f.evidence[0]}` : f.evidence[0]
      lines.push(`  ${f.fix.padEnd(width)}  ${f.status.padEnd(15)}  ${why}`)
    }
  }
  return lines.join('\n')
}
