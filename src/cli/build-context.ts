import {availableParallelism} from 'node:os'

import type {BuildContext} from '../pipeline/stage.js'
import {StageCache} from '../pipeline/cache.js'
import {buildOptionsOf, type OptionName} from '../pipeline/options.js'
import {RecipeStore, type ProjectDirs} from '../recipe/load.js'
import {resolveCacheDir} from './flags.js'

/**
 * Loads and checks the recipe (all problems at once) and names the cache a command works on, from
 * options the table has already parsed (parseOptions): nothing is created, so a refused build
 * leaves nothing behind.
 */
export function makeBuildContext(dirs: ProjectDirs, recipeId: string, parsed: Partial<Record<OptionName, unknown>>): {ctx: BuildContext; cache: StageCache} {
  const recipe = new RecipeStore(dirs).load(recipeId)
  const cacheDir = resolveCacheDir(parsed['cache-dir'] as string | undefined)
  const options = buildOptionsOf(parsed)
  return {ctx: {recipe, dirs, options: {...options, jobs: options.jobs ?? availableParallelism()}, cacheDir}, cache: new StageCache(cacheDir)}
}
