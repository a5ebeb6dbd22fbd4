import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {z} from 'zod'

import {InputError} from '../errors.js'
import {loadYamlFile} from '../util/yaml-file.js'

const release = z.string().regex(/^\d+\.\d+(\.\d+)?$/, 'must be a release such as 5.12 or 5.10.35')
const commitId = z.string().regex(/^[0-9a-f]{12,40}$/, 'must be a commit id: 12 to 40 lowercase hex digits')

/** A fact about a tree's content: a file (any of a list) has a line of code (not a C comment line) matching a pattern, or exists. */
export const ProbeSpec = z.strictObject({
  file: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
  /** a regular expression one line of the file must match; omitted: the file must exist */
  matches: z.string().min(1).optional(),
  /** the first line matching `matches` must come before the first line matching this */
  before: z.string().min(1).optional(),
})
export type Probe = z.infer<typeof ProbeSpec>

export const FixSpec = z.strictObject({
  id: z.string().regex(/^[a-z0-9-]+$/),
  title: z.string().min(1),
  bug: z.string().min(1),
  commits: z.array(commitId).min(1),
  mainline: release,
  stable: z.array(release).default([]),
  /** the fix only makes sense where the tree has this (e.g. code it changes) */
  requires_in_tree: ProbeSpec.optional(),
  present_when: z.array(ProbeSpec).min(1),
})
export type Fix = z.infer<typeof FixSpec>

const FixesFile = z.strictObject({fixes: z.array(FixSpec).min(1)})

export const FIXES_FILE = 'fixes.yaml'

/** kernels/fixes.yaml: the CVM guest fixes and the probes that find them in a tree. */
export async function loadFixes(kernelsDir: string): Promise<Fix[]> {
  const file = join(kernelsDir, FIXES_FILE)
  if (!existsSync(file)) throw new InputError(`no ${file}`, {hint: 'the project checkout is incomplete: kernels/fixes.yaml lists the guest fixes'})
  const data = await loadYamlFile(file, FixesFile, {noun: 'list of fixes', hint: 'a fix is {id, title, bug, commits, mainline, stable, present_when: [{file, matches}]}'})
  const ids = new Set<string>()
  for (const f of data.fixes) {
    if (ids.has(f.id)) throw new InputError(`${file}: fix id ${f.id} appears twice`, {hint: 'give every fix its own id'})
    ids.add(f.id)
    for (const p of [...f.present_when, ...(f.requires_in_tree ? [f.requires_in_tree] : [])]) {
      for (const re of [p.matches, p.before]) {
        if (re === undefined) continue
        try {
          new RegExp(re, 'm')
        } catch (e) {
          throw new InputError(`${file}: fix ${f.id}: pattern ${JSON.stringify(re)} is not a regular expression: ${(e as Error).message}`, {hint: 'fix the pattern'})
        }
      }
    }
  }
  return data.fixes
}

export interface ProbeResult {
  holds: boolean
  /** the file and line that shows it, or what is missing */
  evidence: string
}

/** Evaluates one probe against a source tree. */
export async function runProbe(tree: string, p: Probe): Promise<ProbeResult> {
  const files = Array.isArray(p.file) ? p.file : [p.file]
  const existing = files.filter((f) => existsSync(join(tree, f)))
  if (!existing.length) return {holds: false, evidence: `no ${files.join(' or ')}`}
  if (!p.matches) return {holds: true, evidence: `${existing[0]} exists`}
  const re = new RegExp(p.matches)
  for (const f of existing) {
    // probes read code: a C comment line that names a function is not a call of it
    const lines = (await readFile(join(tree, f), 'utf8')).split('\n').map((l) => (/^\s*(\*|\/\*|\/\/)/.test(l) ? '' : l))
    const at = lines.findIndex((l) => re.test(l))
    if (at < 0) continue
    if (p.before) {
      const other = new RegExp(p.before)
      const otherAt = lines.findIndex((l) => other.test(l))
      if (otherAt >= 0 && otherAt < at) return {holds: false, evidence: `${f}:${otherAt + 1} matches /${p.before}/ before ${f}:${at + 1} matches /${p.matches}/`}
    }
    return {holds: true, evidence: `${f}:${at + 1}: ${lines[at].trim()}`}
  }
  return {holds: false, evidence: `no line of ${existing.join(' or ')} matches /${p.matches}/`}
}

export type FixState = 'present' | 'missing' | 'not-applicable'

export interface FixInTree {
  fix: string
  title: string
  state: FixState
  /** the probe lines that show it present, or the first one that does not hold */
  evidence: string[]
}

/** Whether a tree has a fix, read from its content. */
export async function fixInTree(tree: string, fix: Fix): Promise<FixInTree> {
  const base = {fix: fix.id, title: fix.title}
  if (fix.requires_in_tree) {
    const pre = await runProbe(tree, fix.requires_in_tree)
    if (!pre.holds) return {...base, state: 'not-applicable', evidence: [`the tree lacks what this fix changes: ${pre.evidence}`]}
  }
  const evidence: string[] = []
  for (const p of fix.present_when) {
    const r = await runProbe(tree, p)
    if (!r.holds) return {...base, state: 'missing', evidence: [r.evidence]}
    evidence.push(r.evidence)
  }
  return {...base, state: 'present', evidence}
}
