import {existsSync, readdirSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {basename, join, relative, sep} from 'node:path'
import {pathToFileURL} from 'node:url'

import {parseDotConfig, valueOf, type DotConfig} from '../kernel/dotconfig.js'
import {loadFeatures} from '../kernel/features.js'
import {loadFixes} from '../kernel/fixes.js'
import type {PatchRecord} from '../kernel/series-apply.js'
import {buildRecordPath, type BuildRecord} from '../pipeline/build-record.js'
import {StageCache} from '../pipeline/cache.js'
import {formatProblem, RecipeStore, type ProjectDirs} from '../recipe/load.js'
import {CELL_LABELS, nvmeCounts, REPORT_FEATURES, type CellPatch, type CellState, type FixView, type ReportCell, type ReportData, type ReportLink, type ReportRow, type ValidationCell} from '../report/model.js'
import {checkRecipeKernel} from './kernel-check.js'

export interface ReportOptions {
  cacheDir: string
  /** the folder report.html is written to: links are relative to it (else file:// URLs) */
  outDir?: string
  /** only these recipes (default: every recipe `cvm-image recipes` lists) */
  recipes?: string[]
  /** the time the report says it was made (tests fix it) */
  now?: Date
}

/**
 * The report's data, from the cache and kernels/ alone: per recipe, each fix and CVM feature as
 * `kernel check <recipe>` reads them (cache-only: a tree the cache lacks is said, never fetched),
 * and the last control and patched validations the cache holds (builds/<id>.control.json,
 * builds/<id>.json). Reads only.
 */
export async function collectReport(dirs: ProjectDirs, opts: ReportOptions): Promise<ReportData> {
  const store = new RecipeStore(dirs)
  const cache = new StageCache(opts.cacheDir)
  const fixes = await loadFixes(dirs.kernels)
  const features = await loadFeatures(dirs.kernels, REPORT_FEATURES.map((f) => f.name))
  const link = (path: string): ReportLink => ({
    path,
    name: basename(path),
    href: opts.outDir ? relative(opts.outDir, path).split(sep).map(encodeURIComponent).join('/') : pathToFileURL(path).href,
  })
  const unknownCells = (columns: string[], evidence: string): ReportCell[] => columns.map((column) => ({column, state: 'unknown', label: CELL_LABELS.unknown, evidence, patches: []}))
  const rows: ReportRow[] = []
  for (const id of opts.recipes ?? store.concreteIds()) {
    const loaded = store.tryLoad(id)
    const patchedPath = buildRecordPath(opts.cacheDir, id)
    const controlPath = buildRecordPath(opts.cacheDir, id, {control: true})
    const patched = await readRecord(patchedPath)
    const control = await readRecord(controlPath)
    const validations = {control: control && validationCell('control', control, link(controlPath), link), patched: patched && validationCell('patched', patched, link(patchedPath), link)}
    if ('problems' in loaded) {
      const status = loaded.problems.every((p) => p.unsupported) ? 'unsupported' : 'invalid'
      const note = `${status}, not checked: ${loaded.problems.map(formatProblem).join('; ')}`
      rows.push({recipe: id, name: loaded.recipe?.name ?? '?', status, kernelLine: loaded.recipe?.kernel.line ?? '?', note, fixes: unknownCells(fixes.map((f) => f.id), note), features: unknownCells(features.map((f) => f.name), note), ...validations})
      continue
    }
    const {recipe} = loaded
    const row: ReportRow = {recipe: id, name: recipe.name, status: recipe.status, kernelLine: recipe.kernel.line, fixes: [], features: [], ...validations}
    const checked = await checkRecipeKernel({recipe: loaded, dirs, options: {}, cacheDir: opts.cacheDir}, cache, {cacheOnly: true, featureNames: features.map((f) => f.name)})
    if (!checked.result) {
      row.note = `source not in the cache: run cvm-image kernel check ${id} or build it`
      row.fixes = unknownCells(fixes.map((f) => f.id), row.note)
      row.features = unknownCells(features.map((f) => f.name), row.note)
      rows.push(row)
      continue
    }
    if (checked.otherCode.length) row.treeNote = `${checked.otherCode.join(' and ')}: the last build's, same inputs, other code`
    if (checked.missing.includes('patch')) row.note = `patched tree not in the cache: what the series adds shows as missing; run cvm-image kernel check ${id} or build it`
    const applied = checked.applied ?? []
    row.version = checked.result.version
    row.fixes = (checked.result.fixes ?? []).map((v) => {
      const state: CellState = v.status
      return {column: v.fix, state, label: CELL_LABELS[state], evidence: v.evidence[0] ?? '', patches: state === 'added-by-series' ? patchesFor(applied, [v.fix]) : []}
    })
    const config = await builtConfig(patched ?? control)
    row.features = checked.result.features.map((v) => {
      const f = features.find((x) => x.name === v.feature)!
      const added = v.status === 'supported' && v.reason.startsWith('added by the recipe\'s series')
      let state: CellState = v.status === 'needs-backport' ? 'missing' : added ? 'added-by-series' : v.status === 'needs-config' ? 'needs-config' : 'present'
      let evidence = v.reason
      if (config && (state === 'present' || state === 'added-by-series')) {
        const unset = Object.entries(f.requires).filter(([opt, want]) => !want.includes(valueOf(config, opt)))
        if (unset.length) {
          state = 'needs-config'
          evidence = `the tree has it; the built .config sets ${unset.map(([opt, want]) => `${opt}=${valueOf(config, opt)} (needs ${want.join(' or ')})`).join(', ')}`
        }
      }
      return {column: v.feature, state, label: CELL_LABELS[state], evidence, patches: added ? patchesFor(applied, f.fixes ?? []) : []}
    })
    rows.push(row)
  }
  const fixViews: FixView[] = fixes.map((f) => {
    const with_ = (s: CellState) => rows.filter((r) => r.fixes.find((c) => c.column === f.id)?.state === s).map((r) => r.recipe)
    return {id: f.id, title: f.title, bug: f.bug, commits: f.commits, mainline: f.mainline, stable: f.stable ?? [], needs: with_('missing'), addedBy: with_('added-by-series'), present: with_('present'), notApplicable: with_('not-applicable'), unknown: with_('unknown')}
  })
  return {
    generatedAt: (opts.now ?? new Date()).toISOString(),
    cacheDir: opts.cacheDir,
    fixColumns: fixes.map((f) => ({id: f.id, title: f.title, head: f.id})),
    featureColumns: features.map((f) => ({id: f.name, title: f.title, head: REPORT_FEATURES.find((x) => x.name === f.name)!.head})),
    rows,
    fixes: fixViews,
  }
}

/** The applied series entries that make one of these fixes: patch file and upstream ids. */
function patchesFor(applied: PatchRecord[], fixIds: string[]): CellPatch[] {
  return applied
    .filter((r) => r.fixes.some((x) => fixIds.includes(x)))
    .map((r) => ({subject: r.subject, ...(r.file ? {file: r.file} : {}), upstream: r.id ? [r.id] : r.backports}))
}

async function readRecord(path: string): Promise<BuildRecord | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as BuildRecord
  } catch {
    return undefined
  }
}

/** The .config the record's configure stage made, when the cache still has it. */
async function builtConfig(rec: BuildRecord | undefined): Promise<DotConfig | undefined> {
  const dir = rec?.stages.configure?.dir
  if (!dir || !existsSync(join(dir, 'config'))) return undefined
  return parseDotConfig(await readFile(join(dir, 'config'), 'utf8'))
}

function validationCell(kind: ValidationCell['kind'], rec: BuildRecord, buildRecord: ReportLink, link: (p: string) => ReportLink): ValidationCell | undefined {
  const v = rec.stages.validate
  if (!v) return undefined
  const nvme = v.meta.checks.find((c) => c.name === 'nvme-integrity')
  const counts = nvme && nvmeCounts(nvme.evidence)
  const report = join(v.dir, 'report.json')
  // serial.log is the first boot's; another boot's is serial-<mode>-disk-boot.log or serial-<mode>-secure-boot.log
  const serials = existsSync(v.dir) ? readdirSync(v.dir).filter((n) => /^serial.*\.log$/.test(n)).sort((a, b) => (a === 'serial.log' ? -1 : b === 'serial.log' ? 1 : a.localeCompare(b))) : []
  return {
    kind,
    verdict: v.meta.verdict,
    modes: v.meta.modes,
    ...(nvme ? {nvme: {verdict: nvme.verdict, counts: counts ?? nvme.verdict, evidence: nvme.evidence}} : {}),
    when: v.meta.when ?? rec.finishedAt,
    hostKind: v.meta.hostKind ?? 'none',
    buildRecord,
    ...(existsSync(report) ? {report: link(report)} : {}),
    serialLogs: serials.map((n) => link(join(v.dir, n))),
  }
}
