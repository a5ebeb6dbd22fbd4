import {BaseCommand} from '../../cli/base-command.js'
import {formatProblem} from '../../recipe/load.js'
import {RecipeStore} from '../../recipe/load.js'

export interface RecipeRow {
  id: string
  name: string
  status: string
  statusNote?: string
  kernelLine?: string
  base?: string
  problems?: string[]
}

export default class Recipes extends BaseCommand {
  static summary = 'List the recipes and whether each can be built here.'
  static description = `Reads recipes/*.yaml. Status says whether this machine can build a recipe:
buildable-here, needs-source-access (the distro's sources are not reachable from here) or
needs-subscription. A recipe with problems is listed with them.`
  static examples = ['<%= config.bin %> recipes', '<%= config.bin %> recipes --json']

  async run(): Promise<RecipeRow[]> {
    const {flags} = await this.parse(Recipes)
    const store = new RecipeStore(this.dirs(flags.root))
    const rows: RecipeRow[] = store.concreteIds().map((id) => {
      const r = store.tryLoad(id)
      if ('problems' in r) return {id, name: '?', status: 'invalid', problems: r.problems.map(formatProblem)}
      const {recipe} = r
      const base = recipe.base.kind === 'mmdebstrap' ? `mmdebstrap ${recipe.base.suite}` : `image ${recipe.base.sha256 ? 'pinned' : 'unpinned'}`
      return {id, name: recipe.name, status: recipe.status, statusNote: recipe.status_note, kernelLine: recipe.kernel.line, base}
    })
    if (!this.jsonEnabled()) {
      const table = [['ID', 'STATUS', 'KERNEL', 'BASE', 'NAME'], ...rows.map((r) => [r.id, r.status, r.kernelLine ?? '', r.base ?? '', r.name])]
      const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)))
      for (const row of table) this.log(row.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd())
      for (const r of rows) for (const p of r.problems ?? []) this.logToStderr(p)
    }
    return rows
  }
}
