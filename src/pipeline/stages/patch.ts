import {join} from 'node:path'

import {BugError} from '../../errors.js'
import {applyPatches, type PatchToApply} from '../../kernel/apply.js'
import {loadAllSeries, planSeries, seriesDigestInput, seriesNames} from '../../kernel/series.js'
import {linkCopy, moveTree} from '../../kernel/tree.js'
import {UpstreamPatches} from '../../kernel/upstream.js'
import {parseVersion} from '../../kernel/version.js'
import type {Json} from '../../util/fsx.js'
import type {Stage} from '../stage.js'

/**
 * The backport series applied to the source: out/tree. Every patch is checked and applied in a
 * scratch copy first; out/tree appears only when all of them applied.
 */
export const patchStage: Stage = {
  name: 'patch',
  title: 'patch',
  version: 1,
  needs: ['kernel-source'],
  // The kernel git is not an input: a commit id names the same patch in any clone.
  async inputs(ctx) {
    const names = seriesNames(ctx.recipe.recipe.kernel)
    return {series: seriesDigestInput(await loadAllSeries(ctx.dirs.kernels, names), ctx.dirs.kernels) as unknown as Json}
  },
  async run(ctx, io) {
    const source = io.upstream['kernel-source']
    if (!source) throw new BugError('patch stage ran without the kernel-source result')
    const version = parseVersion(String((source.meta as {version: string}).version))
    const series = await loadAllSeries(ctx.dirs.kernels, seriesNames(ctx.recipe.recipe.kernel))
    const plan = planSeries(series, version)
    const upstream = new UpstreamPatches(ctx.cacheDir, ctx.options.kernelGit, io.logFile)

    const toApply: Array<PatchToApply & {meta: Record<string, string>}> = []
    const skipped: Json[] = []
    for (const p of plan) {
      const e = p.entry
      if (p.action === 'skip' && e.kind === 'upstream') {
        skipped.push({id: e.id, subject: e.subject, reason: p.reason})
        io.log(`skip ${e.id} ${e.subject}: ${p.reason}`)
        continue
      }
      if (e.kind === 'upstream') {
        io.progress(`fetching upstream commit ${e.id}`)
        const path = await upstream.resolve({id: e.id, subject: e.subject, mainline: e.mainline, series: e.series})
        toApply.push({label: `${e.series}: ${e.id} ${e.subject}`, path, meta: {id: e.id, subject: e.subject}})
      } else {
        toApply.push({label: `${e.series}: ${e.file}`, path: e.path, meta: {file: `${e.series.split('/')[0]}/${e.file}`, subject: e.subject}})
      }
    }

    const scratch = join(io.work, 'tree')
    await linkCopy(join(source.dir, 'tree'), scratch)
    const applied = await applyPatches(scratch, toApply, {logFile: io.logFile, progress: io.progress})
    await moveTree(scratch, join(io.out, 'tree'))
    for (const a of applied) io.log(`applied ${a.label} sha256 ${a.sha256}`)
    return {
      applied: applied.map((a, i) => ({...toApply[i].meta, sha256: a.sha256})),
      skipped,
    }
  },
}
