import {BaseCommand} from '../../cli/base-command.js'
import {recipeCatalog, type RecipeRow} from '../../recipe/catalog.js'
import {RecipeStore} from '../../recipe/load.js'

export type {RecipeRow} from '../../recipe/catalog.js'

export default class Recipes extends BaseCommand {
  static summary = 'List the recipes and whether each can be built here.'
  static description = `Reads recipes/*.yaml. Status says whether this machine can build a recipe:
buildable-here, needs-source-access (the distro's sources are not reachable from here),
needs-subscription, unsupported (it asks for what its distro family's module in src/distro/ cannot
do: each such field is listed) or invalid. A recipe with problems is listed with them.

With --json, one object per recipe for a CI matrix: id, status, buildable, needs (options a build
must be given), distro, kernel (line, upstream version, source kind, series), validate (the default
modes, and per mode the host it needs: runner, amd-sev or amd-sev-es), formats and digest.
The shape is documented in docs/ci.md.`
  static examples = ['<%= config.bin %> recipes', '<%= config.bin %> recipes --json', "<%= config.bin %> recipes --json | jq -c '[.[] | select(.buildable and .needs == []) | .id]'"]

  async run(): Promise<RecipeRow[]> {
    const {flags} = await this.parse(Recipes)
    const rows = recipeCatalog(new RecipeStore(this.dirs(flags.root)))
    if (!this.jsonEnabled()) {
      const table = [['ID', 'STATUS', 'KERNEL', 'BASE', 'NAME'], ...rows.map((r) => [r.id, r.status, r.kernelLine ?? '', r.base ?? '', r.name])]
      const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)))
      for (const row of table) this.log(row.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd())
      for (const r of rows) for (const p of r.problems ?? []) this.logToStderr(p)
    }
    return rows
  }
}
