import {join} from 'node:path'

import {InputError} from '../errors.js'
import {distroOf} from '../distro/index.js'
import {requireSourceInputs} from '../kernel/source.js'
import {writeBuildRecord, type BuildRecord} from '../pipeline/build-record.js'
import type {StageCache} from '../pipeline/cache.js'
import {registryFormatShare} from '../pipeline/format-share.js'
import {openRemoteCaches} from '../pipeline/open-remote-cache.js'
import type {ForceSpec} from '../pipeline/plan.js'
import type {ValidateResult} from '../pipeline/results.js'
import {runStages, stderrWarning, type RendererChoice, type StageOutcome} from '../pipeline/run.js'
import {STAGE_NAMES, type BuildContext, type Stage, type StageName} from '../pipeline/stage.js'
import {STAGES} from '../pipeline/stages/index.js'
import {publish, STAGES_PUBLISH_READS, type PublishResult, type PublishTarget} from '../publish/index.js'
import type {ConnectOptions} from '../remote/ssh.js'
import {sha256MemoDir} from '../util/extent-hash.js'
import {toolVersion} from '../version.js'

/** What `cvm-image build` returns (its --json). */
export interface BuildResult {
  recipe: string
  /** a control build (--control): the series off but for its build fixes; never published */
  control: boolean
  recipeDigest: string
  buildRecord: string
  stages: StageOutcome[]
  validation?: ValidateResult
  published?: PublishResult
}

export interface BuildRequest {
  ctx: BuildContext
  cache: StageCache
  /** the stages to run (default: all of them, in order) */
  stages?: Stage[]
  force?: ForceSpec
  /** stop after this stage: the record is the partial one, and nothing is published */
  until?: StageName
  /** how long to wait for another build holding a stage's lock */
  lockTimeoutMs?: number
  renderer?: RendererChoice
  /** where to publish the validated image; none: stop after validation. A control build is never published. */
  publish?: {target: PublishTarget; allowUnvalidated?: boolean; ssh?: ConnectOptions}
  /** one line per publish step, for people */
  log?: (line: string) => void
  signal?: AbortSignal
}

/** Refuses, before any work, a recipe that cannot be built as asked. */
export function checkBuildable(ctx: BuildContext): void {
  const {recipe} = ctx.recipe
  if (recipe.abstract) throw new InputError(`recipe ${recipe.id} is abstract: it is only extended by other recipes`, {hint: 'build one of the recipes `cvm-image recipes` lists'})
  requireSourceInputs(recipe.kernel.source, ctx.options.kernelSourceFile, distroOf(recipe))
}

/**
 * A build: the stages from the cache, the build record (builds/<id>.json, or the partial or control
 * one), then, unless the build stopped early or is a control build, the publish of the validated
 * image. A failed validation has already failed its stage (the validate stage throws unless the
 * build is a control build), so a build that gets here has a verdict it may publish or show.
 */
export async function runBuild(req: BuildRequest): Promise<BuildResult> {
  const {ctx, cache} = req
  const {recipe} = ctx.recipe
  checkBuildable(ctx)
  const control = Boolean(ctx.options.control)
  // opened once (credentials read once): the stages and then publish's format files use them
  const remote = openRemoteCaches(ctx.options)
  const {results, outcomes} = await runStages(ctx, cache, req.stages ?? STAGES, {
    remote,
    force: req.force,
    renderer: req.renderer,
    signal: req.signal,
    lockTimeoutMs: req.lockTimeoutMs,
    until: req.until,
    // a stage in a registry is pulled only when read: by publish (now or later), or by a stage that runs here
    read: [...STAGES_PUBLISH_READS, ...(req.until ? [req.until] : [])],
  })
  const record: BuildRecord = {
    recipeId: recipe.id,
    recipeDigest: ctx.recipe.digest,
    recipe,
    toolVersion: toolVersion(),
    sourceDateEpoch: recipe.source_date_epoch,
    finishedAt: new Date().toISOString(),
    stages: results,
  }
  // a build stopped before the last stage must not replace the record of the last complete build, which publish reads
  const partial = req.until !== undefined && req.until !== STAGE_NAMES.at(-1)
  const buildRecord = await writeBuildRecord(cache.root, record, {partial, control})
  const result: BuildResult = {recipe: recipe.id, control, recipeDigest: ctx.recipe.digest, buildRecord, stages: outcomes, validation: results.validate?.meta}
  if (req.publish && !req.until && !control) {
    result.published = await publish(record, req.publish.target, {
      allowUnvalidated: req.publish.allowUnvalidated,
      stagingDir: join(cache.root, 'publish'),
      sha256MemoDir: sha256MemoDir(cache.root),
      // the registries the stages used: publish's format files are pulled from and pushed to them too
      formatShare: registryFormatShare(remote, stderrWarning),
      ssh: req.publish.ssh,
      signal: req.signal,
      log: req.log,
    })
  }
  return result
}
