import {existsSync, readdirSync} from 'node:fs'
import {join} from 'node:path'

import {RecipeStore, type ProjectDirs} from '../recipe/load.js'
import {loadFixes} from './fixes.js'
import {loadSeries} from './series.js'
import {compareVersions, parseVersion} from './version.js'

/** What one kernel line's series (kernels/<line>/series.yaml) carries. */
export interface KernelLine {
  line: string
  title: string
  /** the recipes built on this line */
  recipes: string[]
  /** fix ids the series' entries make, in series order */
  fixes: string[]
  /** local patch files by kind */
  backports: string[]
  buildFixes: string[]
  /** upstream commits fetched with --kernel-git (skipped when the tree already has their fixes) */
  upstream: string[]
}

/** Every kernel line under kernels/, from its data: its series and the recipes that use it. */
export async function kernelLines(dirs: ProjectDirs): Promise<KernelLine[]> {
  const lines = readdirSync(dirs.kernels)
    .filter((d) => /^\d+\.\d+$/.test(d) && existsSync(join(dirs.kernels, d, 'series.yaml')))
    .sort((a, b) => compareVersions(parseVersion(a), parseVersion(b)))
  const store = new RecipeStore(dirs)
  const recipes = store.concreteIds().flatMap((id) => {
    const r = store.tryLoad(id)
    // a recipe its distro module cannot build yet still uses the line
    return r.recipe ? [{id, line: r.recipe.kernel.line}] : []
  })
  const fixOrder = (await loadFixes(dirs.kernels)).map((f) => f.id)
  const out: KernelLine[] = []
  for (const line of lines) {
    const s = await loadSeries(dirs.kernels, `${line}/series.yaml`)
    const fixes = new Set(s.entries.flatMap((e) => e.fixes))
    out.push({
      line,
      title: s.title,
      recipes: recipes.filter((r) => r.line === line).map((r) => r.id),
      fixes: fixOrder.filter((f) => fixes.has(f)),
      backports: s.entries.flatMap((e) => (e.kind === 'backport' ? [e.file] : [])),
      buildFixes: s.entries.flatMap((e) => (e.kind === 'build-fix' ? [e.file] : [])),
      upstream: s.entries.flatMap((e) => (e.kind === 'upstream' ? [e.id] : [])),
    })
  }
  return out
}

/** The README's table of what each line carries (a test keeps the README equal to it). */
export function kernelLinesMarkdown(lines: KernelLine[]): string {
  const rows = lines.map((l) => {
    const carries = l.fixes.length ? l.fixes.join(', ') : 'nothing'
    const patches = [
      l.backports.length ? `${l.backports.length} backport patch${l.backports.length === 1 ? '' : 'es'}` : '',
      l.buildFixes.length ? `${l.buildFixes.length} build fix${l.buildFixes.length === 1 ? '' : 'es'}` : '',
      l.upstream.length ? `${l.upstream.length} upstream commit${l.upstream.length === 1 ? '' : 's'} by id` : '',
    ].filter(Boolean)
    return `| ${l.line} | ${l.recipes.join(', ') || '-'} | ${carries} | ${patches.join(', ') || '-'} |`
  })
  return ['| line | recipes | fixes its series makes | entries |', '|---|---|---|---|', ...rows].join('\n')
}
