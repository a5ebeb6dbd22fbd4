import {Args} from '@oclif/core'
import {stringify} from 'yaml'

import {BaseCommand} from '../../cli/base-command.js'
import {displayPath, RecipeStore} from '../../recipe/load.js'
import type {Recipe} from '../../recipe/schema.js'

export interface ShownRecipe {
  recipe: Recipe
  files: string[]
  digest: string
}

export default class RecipesShow extends BaseCommand {
  static summary = 'Print a recipe as it is after inheritance (extends) and defaults.'
  static examples = ['<%= config.bin %> recipes show ubuntu-20.04', '<%= config.bin %> recipes show debian-12 --json']
  static args = {id: Args.string({description: 'recipe id (file name in recipes/ without .yaml)', required: true})}

  async run(): Promise<ShownRecipe> {
    const {args, flags} = await this.parse(RecipesShow)
    const loaded = new RecipeStore(this.dirs(flags.root)).load(args.id)
    if (!this.jsonEnabled()) {
      this.log(`# ${loaded.recipe.id}: resolved from ${loaded.files.map(displayPath).join(' <- ')}`)
      this.log(`# digest: ${loaded.digest}`)
      this.log(stringify(loaded.recipe, {lineWidth: 0}).trimEnd())
    }
    return {recipe: loaded.recipe, files: loaded.files.map(displayPath), digest: loaded.digest}
  }
}
