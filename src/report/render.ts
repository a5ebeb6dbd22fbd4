import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import Handlebars from 'handlebars'

import type {ReportCell, ReportData, ReportRow, ValidationCell} from './model.js'

/** "2026-12-06 15:42 UTC" */
function day(iso: string): string {
  return iso.replace('T', ' ').replace(/:\d\d(\.\d+)?Z$/, ' UTC')
}

/** A row whose kernel tree was not read at all shows its note across the cells. */
function collapsed(row: ReportRow): boolean {
  return [...row.fixes, ...row.features].every((c) => c.state === 'unknown')
}

/**
 * The page: templates/report/report.html.hbs, every value escaped by handlebars ({{...}} only),
 * CSS inline, no script and no font or file fetched: it opens from a file.
 */
export async function renderHtml(data: ReportData, templatesDir: string): Promise<string> {
  const hb = Handlebars.create()
  hb.registerHelper('join', (xs: unknown) => (Array.isArray(xs) ? xs.join(', ') : ''))
  const template = hb.compile(await readFile(join(templatesDir, 'report', 'report.html.hbs'), 'utf8'))
  const validation = (c: ValidationCell | undefined) => c && {...c, date: day(c.when)}
  const view = {
    ...data,
    generatedAt: day(data.generatedAt),
    cellCount: data.fixColumns.length + data.featureColumns.length,
    rows: data.rows.map((r) => ({
      ...r,
      collapsed: collapsed(r),
      partialNote: collapsed(r) ? undefined : r.note,
      cells: [...r.fixes, ...r.features],
      validations: [
        {kind: 'control', cell: validation(r.control)},
        {kind: 'patched', cell: validation(r.patched)},
      ],
    })),
  }
  return template(view)
}

const md = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ')

function mdCell(c: ReportCell): string {
  const patches = c.patches.map((p) => `${p.file ?? p.subject}${p.upstream.length ? ` (${p.upstream.join(', ')})` : ''}`)
  return md(patches.length ? `${c.label}: ${patches.join('; ')}` : c.label)
}

function mdValidation(v: ValidationCell | undefined): string {
  if (!v) return '-'
  const links = [v.report && `[report.json](${v.report.href})`, ...v.serialLogs.map((s) => `[${s.name}](${s.href})`)].filter(Boolean).join(' ')
  return md(`**${v.verdict}**${v.nvme ? ` nvme ${v.nvme.counts}` : ''}, ${day(v.when)}, ${v.hostKind} ${links}`)
}

/** report.md: the same table and per-fix view, for a terminal or a merge request. */
export function renderMarkdown(data: ReportData): string {
  const heads = ['recipe', 'kernel', ...data.fixColumns.map((c) => c.head), ...data.featureColumns.map((c) => c.head), 'control', 'patched']
  const lines = [
    '# CVM readiness of the recipes',
    '',
    `Made ${day(data.generatedAt)} from the cache \`${data.cacheDir}\` and kernels/, without network.`,
    '',
    `| ${heads.join(' | ')} |`,
    `|${heads.map(() => '---').join('|')}|`,
  ]
  const notes: string[] = []
  for (const r of data.rows) {
    const cells = collapsed(r) ? [...r.fixes, ...r.features].map(() => 'not in cache') : [...r.fixes, ...r.features].map(mdCell)
    lines.push(`| ${md(r.recipe)} | ${md(r.kernelLine)}${r.version ? ` (${r.version})` : ''} | ${cells.join(' | ')} | ${mdValidation(r.control)} | ${mdValidation(r.patched)} |`)
    if (r.note) notes.push(`- ${r.recipe}: ${r.note}`)
    if (r.treeNote) notes.push(`- ${r.recipe}: ${r.treeNote}`)
  }
  if (notes.length) lines.push('', ...notes)
  lines.push('', '## The guest fixes')
  for (const f of data.fixes) {
    lines.push(
      '',
      `### ${f.id}: ${f.title}`,
      '',
      f.bug,
      '',
      `- fixed upstream: mainline ${f.mainline}; commits ${f.commits.join(', ')}`,
      `- stable lines: ${f.stable.length ? f.stable.join(', ') : 'none listed'}`,
      `- still needed by: ${f.needs.length ? f.needs.join(', ') : 'none of the recipes read'}`,
      `- added by the series of: ${f.addedBy.join(', ') || 'none'}`,
      `- present in the tree of: ${f.present.join(', ') || 'none'}`,
    )
    if (f.notApplicable.length) lines.push(`- not applicable to: ${f.notApplicable.join(', ')}`)
    if (f.unknown.length) lines.push(`- not in the cache: ${f.unknown.join(', ')}`)
  }
  return lines.join('\n') + '\n'
}
