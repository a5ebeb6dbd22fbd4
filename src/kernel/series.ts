import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {dirname, join, relative} from 'node:path'

import {z} from 'zod'

import {InputError} from '../errors.js'
import {sha256} from '../util/fsx.js'
import {loadYamlFile} from '../util/yaml-file.js'
import {FIXES_FILE, loadFixes} from './fixes.js'

const release = z.string().regex(/^\d+\.\d+(\.\d+)?$/, 'must be a release such as 5.12 or 5.10.35')
const commitId = z.string().regex(/^[0-9a-f]{12,40}$/, 'must be a commit id: 12 to 40 lowercase hex digits')
const fixIds = z.array(z.string().regex(/^[a-z0-9-]+$/, 'must be a fix id of kernels/fixes.yaml')).default([])

const UpstreamEntry = z.strictObject({
  /** the mainline commit id (12 or more hex digits) */
  id: commitId,
  subject: z.string().min(1),
  why: z.string().min(1),
  /** the first mainline release that has the commit */
  mainline: release,
  /** stable releases that already carry it (documentation: what is in a tree is read from the tree) */
  stable: z.array(release).default([]),
  /** the fixes of kernels/fixes.yaml it makes: a tree that already has them skips the entry without a kernel git */
  fixes: fixIds,
})

/**
 * What a patch written here is: a `backport` of upstream commits (named in `backports`, with how
 * it `differs`), a `build-fix` that lets an old tree build with today's toolchain, a `tree-fix`
 * that undoes what a particular copy of a tree added to its upstream (both applied to control
 * builds too), or a `local` change of the project's own (such as a marker).
 */
export const PATCH_KINDS = ['backport', 'build-fix', 'tree-fix', 'local'] as const
export type PatchKind = (typeof PATCH_KINDS)[number]

/** Kinds a control build applies: what the tree needs to build and run, none of the backports. */
export const CONTROL_KINDS: readonly PatchKind[] = ['build-fix', 'tree-fix']

const LocalEntry = z
  .strictObject({
    /** a .patch file beside the series file, written here */
    file: z.string().regex(/^[A-Za-z0-9._-]+\.patch$/, 'must be a .patch file name beside the series file'),
    kind: z.enum(PATCH_KINDS).default('local'),
    subject: z.string().min(1),
    why: z.string().min(1),
    /** the upstream commits a backport (or a build fix) corresponds to */
    backports: z.array(commitId).default([]),
    /** what differs from upstream */
    differs: z.string().min(1).optional(),
    fixes: fixIds,
  })
  .superRefine((e, ctx) => {
    if (e.kind !== 'backport') return
    if (!e.backports.length) ctx.addIssue({code: 'custom', path: ['backports'], message: 'a backport names the upstream commit ids it backports'})
    if (!e.differs) ctx.addIssue({code: 'custom', path: ['differs'], message: 'a backport says what differs from upstream'})
    if (!e.fixes.length) ctx.addIssue({code: 'custom', path: ['fixes'], message: 'a backport names the fixes of kernels/fixes.yaml it makes'})
  })

export const SeriesSpec = z.strictObject({
  title: z.string().min(1),
  notes: z.string().optional(),
  patches: z.array(z.union([UpstreamEntry, LocalEntry])).default([]),
})

export type SeriesEntry =
  | {kind: 'upstream'; series: string; id: string; subject: string; why: string; mainline: string; stable: string[]; fixes: string[]}
  | {
      kind: PatchKind
      series: string
      file: string
      path: string
      subject: string
      why: string
      backports: string[]
      differs?: string
      fixes: string[]
      sha256: string
    }

export type LocalSeriesEntry = Exclude<SeriesEntry, {kind: 'upstream'}>

export interface Series {
  /** path under kernels/, e.g. 5.10/series.yaml */
  name: string
  title: string
  notes?: string
  entries: SeriesEntry[]
}

/** How people know an entry: "5.4/series.yaml: 0100-swiotlb-min-align-mask.patch". */
export function entryLabel(e: SeriesEntry): string {
  return e.kind === 'upstream' ? `${e.series}: ${e.id} ${e.subject}` : `${e.series}: ${e.file}`
}

/** The series files a recipe applies, in order: recipe.kernel.series, or <line>/series.yaml. */
export function seriesNames(kernel: {line: string; series?: string[]}): string[] {
  return kernel.series ?? [`${kernel.line}/series.yaml`]
}

export async function loadSeries(kernelsDir: string, name: string): Promise<Series> {
  const file = join(kernelsDir, name)
  if (!existsSync(file)) throw new InputError(`series ${name}: no file ${file}`, {hint: 'fix recipe.kernel.series or add the series file under kernels/'})
  const data = await loadYamlFile(file, SeriesSpec, {
    noun: 'patch series',
    hint: 'an entry is either {id, subject, why, mainline, stable, fixes} (an upstream commit) or {file, kind, subject, why, backports, differs, fixes} (a .patch beside the series)',
  })
  const entries: SeriesEntry[] = []
  for (const e of data.patches) {
    if ('id' in e) {
      entries.push({kind: 'upstream', series: name, ...e})
      continue
    }
    const path = join(dirname(file), e.file)
    if (!existsSync(path)) throw new InputError(`series ${name}: patch file ${e.file} not found at ${path}`, {hint: 'add the patch beside the series file or remove the entry'})
    entries.push({...e, series: name, path, sha256: sha256(await readFile(path))})
  }
  return {name, title: data.title, notes: data.notes, entries}
}

/** The series, in order; every fix an entry names must be one of kernels/fixes.yaml. */
export async function loadAllSeries(kernelsDir: string, names: string[]): Promise<Series[]> {
  const series = await Promise.all(names.map((n) => loadSeries(kernelsDir, n)))
  const known = new Set((await loadFixes(kernelsDir)).map((f) => f.id))
  for (const s of series) {
    for (const e of s.entries) {
      const unknown = e.fixes.filter((f) => !known.has(f))
      if (unknown.length) {
        throw new InputError(`series ${entryLabel(e)}: unknown fix ${unknown.join(', ')}`, {hint: `name fixes of kernels/${FIXES_FILE}: ${[...known].join(', ')}`})
      }
    }
  }
  return series
}

/** What the series contribute to a cache key: their text, and every local patch's digest. */
export function seriesDigestInput(series: Series[], kernelsDir: string): Array<{name: string; entries: unknown[]}> {
  return series.map((s) => ({
    name: s.name,
    entries: s.entries.map((e) => (e.kind === 'upstream' ? {id: e.id, fixes: e.fixes} : {file: relative(kernelsDir, e.path), kind: e.kind, sha256: e.sha256})),
  }))
}
