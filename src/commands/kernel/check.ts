import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {checkKernel, renderCheck, type KernelCheckResult} from '../../kernel/check.js'

export default class KernelCheck extends BaseCommand {
  static summary = 'Say, per CVM feature, whether a kernel supports it, needs a backport, or needs config options.'
  static description = 'Give a version (5.4.0, 5.10.223, 6.1) to check against the first mainline and stable releases with each feature, or a .config to check its options as well.'
  static examples = ['<%= config.bin %> kernel check 5.4.0', '<%= config.bin %> kernel check /boot/config-$(uname -r) --json', '<%= config.bin %> kernel check 6.1 --feature sev --feature sev-es']
  static args = {kernel: Args.string({description: 'a kernel version or the path of a kernel .config', required: true})}
  static flags = {
    feature: Flags.string({description: 'check only this feature (kernels/features/<name>.yaml); repeatable', multiple: true}),
  }

  async run(): Promise<KernelCheckResult> {
    const {args, flags} = await this.parse(KernelCheck)
    const result = await checkKernel(this.dirs(flags.root).kernels, args.kernel, flags.feature)
    if (!this.jsonEnabled()) this.log(renderCheck(result))
    return result
  }
}
