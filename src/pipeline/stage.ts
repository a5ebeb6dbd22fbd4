import type {LoadedRecipe, ProjectDirs} from '../recipe/load.js'
import {envOptionsOf, type BuildOptions, type EnvOptions} from './options.js'
import type {StageResult, StageResultTypes} from './results.js'
import type {StageName} from './stage-names.js'

export {STAGE_NAMES, type StageName} from './stage-names.js'

/**
 * Options from the command line, by field: the rows of the options table (options.ts) that a build's
 * stages read. inputs() reads those that change an output; run() gets the others through StageEnv.
 */
export type {BuildOptions} from './options.js'

/** Everything a stage's inputs() may read. Stages never read the environment or the clock directly. */
export interface BuildContext {
  recipe: LoadedRecipe
  dirs: ProjectDirs
  options: BuildOptions
  /** the cache root; stages may keep their own sub-caches under cacheDir/<name> (e.g. ccache, downloads) */
  cacheDir: string
}

export type {StageResult, StageResults} from './results.js'

/**
 * What a stage's run() may use besides its inputs and its upstream results: where things are and
 * how fast, never what is made. run() gets no recipe and no BuildContext, so whatever of the recipe
 * or the command line its output is made of must come through inputs(), and so into its key.
 * Each of these is here because it cannot change the output's bytes:
 */
export type StageEnv = EnvOptions & {
  /** where run() reads the files whose digests its inputs hold (series, features, templates) */
  dirs: ProjectDirs
  /** the cache root, for a stage's own sub-caches under cacheDir/<name> (downloads, ccache, upstream patches) */
  cacheDir: string
}

/**
 * The one place a StageEnv is made from a build's context: the options whose row says they reach the
 * stages by `env` (they cannot change an output: where a file is, how fast, how to reach a host),
 * nothing of the recipe.
 */
export function stageEnv(ctx: BuildContext): StageEnv {
  return {...envOptionsOf(ctx.options), dirs: ctx.dirs, cacheDir: ctx.cacheDir}
}

export interface StageIO<N extends StageName = StageName> {
  /** an empty directory to write outputs to; renamed into the cache when run() returns */
  out: string
  /** the results of the stages named in needs, each typed (the runner refuses to start a stage without them) */
  upstream: {[K in N]: StageResult<K>}
  /** a scratch directory, removed afterwards whatever happens */
  work: string
  /** progress for people (one short line, replaced as it changes) */
  progress(line: string): void
  /** a line for the stage's log (kept in the cache entry as stage.log) */
  log(line: string): void
  /** the stage log's path, to hand to long-running tools */
  logFile: string
  signal: AbortSignal
  /** where things are and how fast (StageEnv): the only part of the build's context run() sees */
  env: StageEnv
}

/**
 * A stage: I is what inputs() returns (JSON, hashed into the cache key) and run() receives, R what run()
 * returns (kept as result.json), N the stages it needs. Real stages are declared as StageOf<name, ...>,
 * which ties R to the stage's entry in StageResultTypes.
 */
export interface Stage<I = unknown, R = unknown, N extends StageName = StageName> {
  name: StageName
  title: string
  /**
   * The module that defines the stage (its import.meta.url): the digest of that module and of every
   * module it imports from this package is part of the cache key (code-digest.ts), so an output made
   * by other code is never reused.
   */
  code: string
  /** the stages whose outputs this one reads; their keys are part of this one's key */
  needs: N[]
  /**
   * Everything besides upstream outputs that determines this stage's output, as JSON:
   * the recipe fields it reads, digests of the files it reads (templates, patches), options.
   * Must be cheap: `plan` calls it for every stage and must stay under a second.
   */
  inputs(ctx: BuildContext): Promise<I> | I
  /**
   * Does the work from the inputs inputs() returned (never recomputed) and its upstream results. It
   * sees neither the recipe nor the options: what it needs of them, inputs() returns. Returns the
   * result to keep as result.json.
   */
  run(io: StageIO<N>, inputs: I): Promise<R>
}

/** A real stage of the pipeline: its name fixes its result type (StageResultTypes). */
export type StageOf<S extends StageName, I, N extends StageName> = Stage<I, StageResultTypes[S], N> & {name: S}
