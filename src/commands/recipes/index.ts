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
buildable-here, needs-source-access (the distro's sources are not reachable from here),
needs-subscription, unsupported (it asks for what its distro family's module in src/distro/ cannot
do: each such field is listed) or invalid. A recipe with problems is listed with them.`
  static examples = ['<%= config.bin %> recipes', '<%= config.bin %> recipes --json']

  async run(): Promise<RecipeRow[]> {
    const {flags} = await this.parse(Recipes)
    const store = new RecipeStore(this.dirs(flags.root))
    const rows: RecipeRow[] = store.concreteIds().map((id) => {
      const r = store.tryLoad(id)
      const recipe = 'problems' in r ? r.recipe : r.recipe
      const problems = 'problems' in r ? r.problems : []
      if (!recipe) return {id, name: '?', status: 'invalid', problems: problems.map(formatProblem)}
      const base = recipe.base.kind === 'mmdebstrap' ? `mmdebstrap ${recipe.base.suite}` : `image ${recipe.base.format} ${recipe.base.sha256 ? 'pinned' : 'unpinned'}`
      const row: RecipeRow = {id, name: recipe.name, status: recipe.status, statusNote: recipe.status_note, kernelLine: recipe.kernel.line, base}
      // a recipe that parses but asks what its distro module cannot do is not buildable anywhere, whatever its status says
      if (problems.length) Object.assign(row, {status: problems.every((p) => p.unsupported) ? 'unsupported' : 'invalid', problems: problems.map(formatProblem)})
      return row
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
