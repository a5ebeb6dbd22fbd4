import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {loadFixes} from '../../kernel/fixes.js'
import {loadAllSeries, seriesDigestInput, seriesNames} from '../../kernel/series.js'
import {applySeries} from '../../kernel/series-apply.js'
import {linkCopy, moveTree} from '../../kernel/tree.js'
import {UpstreamPatches} from '../../kernel/upstream.js'
import {sha256} from '../../util/fsx.js'
import type {PatchResult} from '../results.js'
import type {StageOf} from '../stage.js'

export type {PatchResult} from '../results.js'

/** The series' content, the fixes' probes, and whether it is a control build. */
export interface PatchInputs {
  /** the series files under kernels/, in order */
  names: string[]
  series: ReturnType<typeof seriesDigestInput>
  fixes: string
  control: boolean
}

/**
 * The backport series applied to the source: out/tree. Every patch is checked and applied in a
 * scratch copy first; out/tree appears only when all of them applied. With --control only the
 * build fixes apply, so the unpatched kernel can be validated to show what the series fixes.
 */
export const patchStage: StageOf<'patch', PatchInputs, 'kernel-source'> = {
  name: 'patch',
  title: 'patch',
  code: import.meta.url,
  needs: ['kernel-source'],
  // The kernel git is not an input: a commit id names the same patch in any clone.
  async inputs(ctx) {
    const names = seriesNames(ctx.recipe.recipe.kernel)
    return {
      names,
      series: seriesDigestInput(await loadAllSeries(ctx.dirs.kernels, names), ctx.dirs.kernels),
      fixes: sha256(await readFile(join(ctx.dirs.kernels, 'fixes.yaml'))),
      control: ctx.options.control ?? false,
    }
  },
  async run(io, {names, control}) {
    const {dirs, cacheDir, kernelGit} = io.env
    const source = io.upstream['kernel-source']
    // the series' files are read again to apply them; their digests (inputs.series) made the key
    const series = await loadAllSeries(dirs.kernels, names)
    const scratch = join(io.work, 'tree')
    await linkCopy(join(source.dir, 'tree'), scratch)
    const records = await applySeries(scratch, series, {
      control,
      fixes: await loadFixes(dirs.kernels),
      upstream: new UpstreamPatches(cacheDir, kernelGit, io.logFile),
      logFile: io.logFile,
      progress: io.progress,
      log: io.log,
    })
    await moveTree(scratch, join(io.out, 'tree'))
    const result: PatchResult = {
      control,
      applied: records.filter((r) => r.action === 'applied'),
      skipped: records.filter((r) => r.action === 'skipped'),
      withheld: records.filter((r) => r.action === 'withheld'),
    }
    return result
  },
}
