import {Args} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {makeBuildContext} from '../cli/build-context.js'
import {BUILD_INPUTS, optionSet} from '../cli/flags.js'
import {InputError} from '../errors.js'
import {openRemoteCaches} from '../pipeline/open-remote-cache.js'
import {planBuild} from '../pipeline/plan.js'
import {STAGES} from '../pipeline/stages/index.js'

export interface PlanRow {
  stage: string
  key: string
  cached: boolean
  /** in this cache (local), in a registry signed by a trusted key (remote), or to be built (runs) */
  source: 'local' | 'remote' | 'runs'
  reason: string
  needs: string[]
}

export interface PlanResult {
  recipe: string
  recipeDigest: string
  cacheDir: string
  stages: PlanRow[]
}

const PLAN_OPTIONS = optionSet(BUILD_INPUTS)

export default class Plan extends BaseCommand {
  static summary = 'Show, before anything runs, which stages of a build are cached and why each other one will run.'
  static description = `Computes every stage's cache key from the recipe fields, files and options it reads and its
upstream stages' keys. Reads the cache only: nothing is created, locked or changed.`
  static examples = ['<%= config.bin %> plan debian-12', '<%= config.bin %> plan debian-12 --force compile --json']
  static args = {id: Args.string({description: 'recipe id', required: true})}
  static flags = PLAN_OPTIONS.flags

  async run(): Promise<PlanResult> {
    const {args, flags} = await this.parse(Plan)
    const o = PLAN_OPTIONS.parse(flags)
    const {ctx, cache} = makeBuildContext(this.dirs(flags.root), args.id, o)
    if (ctx.recipe.recipe.abstract) throw new InputError(`recipe ${args.id} is abstract: it is only extended by other recipes`)
    // --cache-from / --cache-to: the registry is asked about each stage this cache lacks
    const plan = await planBuild(ctx, cache, STAGES, o.force ?? [], openRemoteCaches(ctx.options))
    const rows = plan.map((p): PlanRow => ({stage: p.name, key: p.key, cached: p.cached, source: p.cached ? 'local' : p.remote ? 'remote' : 'runs', reason: p.reason, needs: p.stage.needs}))
    if (!this.jsonEnabled()) {
      this.log(`plan for ${args.id} (recipe ${ctx.recipe.digest.slice(0, 12)}), cache ${cache.root}`)
      const w = Math.max(...rows.map((r) => r.stage.length))
      for (const r of rows) this.log(`  ${r.stage.padEnd(w)}  ${r.key.slice(0, 12)}  ${r.source === 'local' ? 'cached' : r.source === 'remote' ? r.reason : `will run: ${r.reason}`}`)
      this.log(`  ${'publish'.padEnd(w)}  ${''.padEnd(12)}  runs with --publish (idempotent at its target)`)
    }
    return {recipe: args.id, recipeDigest: ctx.recipe.digest, cacheDir: cache.root, stages: rows}
  }
}
