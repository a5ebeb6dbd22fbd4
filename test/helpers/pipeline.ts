import {StageCache} from '../../src/pipeline/cache.js'
import {runStages, type RunStagesResult} from '../../src/pipeline/run.js'
import type {BuildOptions, StageName} from '../../src/pipeline/stage.js'
import {STAGES} from '../../src/pipeline/stages/index.js'
import {projectDirs, RecipeStore} from '../../src/recipe/load.js'
import {repoRoot, sharedTestCache} from './paths.js'

/**
 * Runs a real recipe of the repository through the real pipeline up to a stage, in the cache the
 * heavy tests share: the debian-12 kernel, rootfs and disk are built once per CI run, whichever test
 * asks first (the stage locks keep concurrent askers apart).
 */
export async function buildUntil(recipeId: string, until: StageName, options: BuildOptions = {}): Promise<RunStagesResult> {
  const dirs = projectDirs(repoRoot)
  const recipe = new RecipeStore(dirs).load(recipeId)
  const cacheDir = sharedTestCache()
  return runStages({recipe, dirs, options: {jobs: 2, ...options}, cacheDir}, new StageCache(cacheDir), STAGES, {until, renderer: 'silent'})
}
