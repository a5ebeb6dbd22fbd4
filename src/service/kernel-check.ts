import {join} from 'node:path'

import {checkTree, type KernelCheckResult} from '../kernel/check.js'
import type {PatchRecord} from '../kernel/series-apply.js'
import type {StageCache} from '../pipeline/cache.js'
import {cachedStages} from '../pipeline/plan.js'
import {stageResult, type StageResults} from '../pipeline/results.js'
import {runStages, type RendererChoice} from '../pipeline/run.js'
import type {BuildContext, StageName} from '../pipeline/stage.js'
import {STAGES} from '../pipeline/stages/index.js'

/** The stages a recipe's kernel check reads: its kernel source and the tree with its series applied. */
const TREE_STAGES = STAGES.filter((s) => s.name === 'kernel-source' || s.name === 'patch')

export interface RecipeKernelCheck {
  /** absent when the kernel source is not in the cache (cache-only checks) */
  result?: KernelCheckResult
  /** the applied series entries (the patch stage's), when the patched tree was read */
  applied?: PatchRecord[]
  /** the tree stages the cache lacks (cache-only checks): kernel-source, patch */
  missing: StageName[]
  /** cache-only checks: the tree stages read from the entry of the recipe's last build of the same inputs, made by other code */
  otherCode: StageName[]
}

/**
 * `kernel check <recipe>`: the recipe's kernel source and its patched tree (the kernel-source and
 * patch stages, from the cache as a build takes them), each fix and feature read from the code.
 * With cacheOnly nothing runs or downloads: a stage the cache lacks is named in `missing` (one whose
 * inputs are those of the recipe's last build of it, and only the code changed, is read from that
 * build's entry and named in `otherCode`: the tree is the same source and series); with the
 * source there but not the patched tree, the source alone is read (what the series adds shows as
 * missing).
 */
export async function checkRecipeKernel(
  ctx: BuildContext,
  cache: StageCache,
  opts: {cacheOnly?: boolean; featureNames?: readonly string[]; renderer?: RendererChoice; signal?: AbortSignal} = {},
): Promise<RecipeKernelCheck> {
  let results: StageResults
  let missing: StageName[] = []
  let otherCode: StageName[] = []
  if (opts.cacheOnly) ({results, missing, otherCode} = await cachedStages(ctx, cache, TREE_STAGES, {sameInputs: true}))
  else ({results} = await runStages(ctx, cache, TREE_STAGES, {renderer: opts.renderer, signal: opts.signal}))
  const subject = ctx.recipe.recipe.id
  if (!results['kernel-source']) return {missing, otherCode}
  const source = join(stageResult(results, 'kernel-source', 'kernel check').dir, 'tree')
  const patch = results.patch
  if (!patch) return {result: await checkTree(ctx.dirs.kernels, source, {featureNames: opts.featureNames, subject}), missing, otherCode}
  const result = await checkTree(ctx.dirs.kernels, source, {featureNames: opts.featureNames, subject, patched: {tree: join(patch.dir, 'tree'), records: patch.meta.applied}})
  return {result, applied: patch.meta.applied, missing, otherCode}
}
