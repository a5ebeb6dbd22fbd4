import {existsSync} from 'node:fs'
import {readdir} from 'node:fs/promises'
import {join} from 'node:path'

import {z} from 'zod'

import {InputError} from '../errors.js'
import {loadYamlFile} from '../util/yaml-file.js'
import {ProbeSpec, type Probe} from './fixes.js'

const optionValue = z.union([z.string(), z.boolean(), z.number()]).transform((v) => (v === true ? 'y' : v === false ? 'n' : String(v)))

/** kernels/features/<name>.yaml: what a CVM feature needs from a kernel. */
export const FeatureSpec = z.strictObject({
  title: z.string().min(1),
  /** the first mainline release that has the feature */
  mainline: z.string().regex(/^\d+\.\d+(\.\d+)?$/),
  /** stable releases that carry a backport, e.g. 5.10.35 */
  stable: z.array(z.string().regex(/^\d+\.\d+\.\d+$/)).default([]),
  /** where the fact comes from (commit, tag, pull) */
  upstream: z.string().min(1),
  /** the config fragment under templates/kernel/ */
  fragment: z.string().regex(/^[a-z0-9-]+\.config\.hbs$/),
  /** options and the values that satisfy them (a list: any of these) */
  requires: z.record(z.string().regex(/^CONFIG_[A-Z0-9_]+$/), z.union([optionValue, z.array(optionValue).min(1)])),
  guest_prints: z.string().optional(),
  notes: z.string().optional(),
  /** where this project carries a backport for lines older than mainline, said when a tree lacks the feature */
  carried: z.string().optional(),
  /** how a source tree shows the feature (every probe holds); without it a tree is judged by its version */
  present_when: z.array(ProbeSpec).min(1).optional(),
  /** or: the tree has these fixes of kernels/fixes.yaml */
  fixes: z.array(z.string()).min(1).optional(),
})

export interface Feature {
  name: string
  file: string
  title: string
  mainline: string
  stable: string[]
  upstream: string
  fragment: string
  /** option -> accepted values */
  requires: Record<string, string[]>
  notes?: string
  carried?: string
  presentWhen?: Probe[]
  fixes?: string[]
}

export async function listFeatures(kernelsDir: string): Promise<string[]> {
  const dir = join(kernelsDir, 'features')
  if (!existsSync(dir)) return []
  return (await readdir(dir)).filter((f) => f.endsWith('.yaml')).map((f) => f.slice(0, -5)).sort()
}

export async function loadFeature(kernelsDir: string, name: string): Promise<Feature> {
  const file = join(kernelsDir, 'features', `${name}.yaml`)
  if (!existsSync(file)) {
    throw new InputError(`unknown kernel feature "${name}": no ${file}`, {hint: `known features: ${(await listFeatures(kernelsDir)).join(', ')}`})
  }
  // a syntax error names file:line:col and exits 2 (src/util/yaml-file.ts), as a series or fixes.yaml does
  const s = await loadYamlFile(file, FeatureSpec, {noun: 'feature description', hint: 'see kernels/features/sev.yaml for the fields a feature has'})
  const requires: Record<string, string[]> = {}
  for (const [opt, v] of Object.entries(s.requires)) requires[opt] = Array.isArray(v) ? v : [v]
  return {name, file, title: s.title, mainline: s.mainline, stable: s.stable, upstream: s.upstream, fragment: s.fragment, requires, notes: s.notes, carried: s.carried, presentWhen: s.present_when, fixes: s.fixes}
}

export async function loadFeatures(kernelsDir: string, names?: readonly string[]): Promise<Feature[]> {
  const all = names ?? (await listFeatures(kernelsDir))
  return Promise.all(all.map((n) => loadFeature(kernelsDir, n)))
}
