import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {dirname, join, relative} from 'node:path'

import {LineCounter, parseDocument} from 'yaml'
import {z} from 'zod'

import {InputError} from '../errors.js'
import {sha256} from '../util/fsx.js'
import {contains, formatVersion, type KernelVersion} from './version.js'

const release = z.string().regex(/^\d+\.\d+(\.\d+)?$/, 'must be a release such as 5.12 or 5.10.35')

const UpstreamEntry = z.strictObject({
  /** the mainline commit id (12 or more hex digits) */
  id: z.string().regex(/^[0-9a-f]{12,40}$/, 'must be a commit id: 12 to 40 lowercase hex digits'),
  subject: z.string().min(1),
  why: z.string().min(1),
  /** the first mainline release that has the commit */
  mainline: release,
  /** stable releases that already carry it */
  stable: z.array(release).default([]),
})

const LocalEntry = z.strictObject({
  /** a .patch file beside the series file, written here */
  file: z.string().regex(/^[A-Za-z0-9._-]+\.patch$/, 'must be a .patch file name beside the series file'),
  subject: z.string().min(1),
  why: z.string().min(1),
})

export const SeriesSpec = z.strictObject({
  title: z.string().min(1),
  notes: z.string().optional(),
  patches: z.array(z.union([UpstreamEntry, LocalEntry])).default([]),
})

export type SeriesEntry =
  | {kind: 'upstream'; series: string; id: string; subject: string; why: string; mainline: string; stable: string[]}
  | {kind: 'local'; series: string; file: string; path: string; subject: string; why: string; sha256: string}

export interface Series {
  /** path under kernels/, e.g. 5.10/series.yaml */
  name: string
  title: string
  entries: SeriesEntry[]
}

/** The series files a recipe applies, in order: recipe.kernel.series, or <line>/series.yaml. */
export function seriesNames(kernel: {line: string; series?: string[]}): string[] {
  return kernel.series ?? [`${kernel.line}/series.yaml`]
}

export async function loadSeries(kernelsDir: string, name: string): Promise<Series> {
  const file = join(kernelsDir, name)
  if (!existsSync(file)) throw new InputError(`series ${name}: no file ${file}`, {hint: 'fix recipe.kernel.series or add the series file under kernels/'})
  const lines = new LineCounter()
  const doc = parseDocument(await readFile(file, 'utf8'), {lineCounter: lines})
  if (doc.errors.length) {
    const pos = lines.linePos(doc.errors[0].pos[0])
    throw new InputError(`${file}:${pos.line}:${pos.col}: YAML syntax: ${doc.errors[0].message.split('\n')[0]}`, {hint: 'fix the YAML at this position'})
  }
  const r = SeriesSpec.safeParse(doc.toJS())
  if (!r.success) {
    throw new InputError(`${file}: not a valid patch series`, {
      details: r.error.issues.map((i) => {
        const node = doc.getIn(i.path as (string | number)[], true) as {range?: [number]} | undefined
        const at = node?.range ? `:${lines.linePos(node.range[0]).line}` : ''
        return `  ${file}${at}: ${i.path.join('.')}: ${i.message}`
      }),
      hint: 'an entry is either {id, subject, why, mainline, stable} (an upstream commit) or {file, subject, why} (a .patch beside the series)',
    })
  }
  const entries: SeriesEntry[] = []
  for (const e of r.data.patches) {
    if ('id' in e) {
      entries.push({kind: 'upstream', series: name, ...e})
      continue
    }
    const path = join(dirname(file), e.file)
    if (!existsSync(path)) throw new InputError(`series ${name}: patch file ${e.file} not found at ${path}`, {hint: 'add the patch beside the series file or remove the entry'})
    entries.push({kind: 'local', series: name, file: e.file, path, subject: e.subject, why: e.why, sha256: sha256(await readFile(path))})
  }
  return {name, title: r.data.title, entries}
}

export async function loadAllSeries(kernelsDir: string, names: string[]): Promise<Series[]> {
  return Promise.all(names.map((n) => loadSeries(kernelsDir, n)))
}

export interface PlannedPatch {
  entry: SeriesEntry
  /** skipped: the source already contains it */
  action: 'apply' | 'skip'
  reason: string
}

/** Which entries apply to a source of this version, in order, and which it already contains. */
export function planSeries(series: Series[], version: KernelVersion): PlannedPatch[] {
  return series.flatMap((s) =>
    s.entries.map((entry): PlannedPatch => {
      if (entry.kind === 'upstream' && contains(version, entry.mainline, entry.stable)) {
        const where = entry.stable.find((st) => st.startsWith(`${version.major}.${version.minor}.`))
        return {entry, action: 'skip', reason: `contained in ${formatVersion(version)} (${where ? `stable ${where}` : `mainline ${entry.mainline}`})`}
      }
      return {entry, action: 'apply', reason: entry.kind === 'upstream' ? `not in ${formatVersion(version)} (mainline ${entry.mainline})` : 'local patch'}
    }),
  )
}

/** What the series contribute to a cache key: their text, and every local patch's digest. */
export function seriesDigestInput(series: Series[], kernelsDir: string): Array<{name: string; entries: unknown[]}> {
  return series.map((s) => ({
    name: s.name,
    entries: s.entries.map((e) => (e.kind === 'upstream' ? {id: e.id, mainline: e.mainline, stable: e.stable} : {file: relative(kernelsDir, e.path), sha256: e.sha256})),
  }))
}
