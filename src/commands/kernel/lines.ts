import {BaseCommand} from '../../cli/base-command.js'
import {kernelLines, kernelLinesMarkdown, type KernelLine} from '../../kernel/lines.js'

export default class KernelLines extends BaseCommand {
  static summary = 'List the kernel lines under kernels/: the recipes on each and the guest fixes its series makes.'
  static description = `Reads kernels/<line>/series.yaml and the recipes. A fix is one of kernels/fixes.yaml; a series
entry is a backport written here, a build fix (so an old tree builds with today's toolchain), or an
upstream commit fetched by id with --kernel-git. What a given tree already has: \`cvm-image kernel check\`.`
  static examples = ['<%= config.bin %> kernel lines', '<%= config.bin %> kernel lines --json']

  async run(): Promise<KernelLine[]> {
    const {flags} = await this.parse(KernelLines)
    const lines = await kernelLines(this.dirs(flags.root))
    if (!this.jsonEnabled()) this.log(kernelLinesMarkdown(lines))
    return lines
  }
}
