import {Recipe} from '../../src/recipe/schema.js'
import {projectDirs, RecipeStore, type LoadedRecipe} from '../../src/recipe/load.js'
import {canonicalJson, sha256} from '../../src/util/fsx.js'
import {repoRoot} from './paths.js'

/**
 * recipes/debian-12.yaml as the repository ships it (its base.packages and image.remove from
 * recipes/_debian.yaml), then `change` applied (tests replace the base, for example). `change`
 * edits the raw recipe object, untyped as the YAML is; Recipe.parse checks what it made.
 */
export function debian12Recipe(change: (r: Record<string, any>) => void = () => {}): LoadedRecipe {
  const loaded = new RecipeStore(projectDirs(repoRoot)).load('debian-12')
  const raw = JSON.parse(JSON.stringify(loaded.recipe)) as Record<string, any>
  change(raw)
  const recipe = Recipe.parse(raw)
  return {recipe, files: loaded.files, digest: sha256(canonicalJson(recipe))}
}
