import {existsSync, statSync} from 'node:fs'

import {Args, Flags} from '@oclif/core'

import {checkRecipeKernel} from '../../service/kernel-check.js'
import {BaseCommand} from '../../cli/base-command.js'
import {makeBuildContext} from '../../cli/build-context.js'
import {optionSet} from '../../cli/flags.js'
import {runInterruptible} from '../../cli/interrupt.js'
import {distroOf} from '../../distro/index.js'
import {BugError} from '../../errors.js'
import {requireSourceInputs} from '../../kernel/source.js'
import {checkKernel, checkTree, renderCheck, type KernelCheckResult} from '../../kernel/check.js'
import {chooseRenderer} from '../../pipeline/run.js'
import {RecipeStore} from '../../recipe/load.js'

const CHECK_OPTIONS = optionSet(['cache-dir', 'kernel-source-file', 'kernel-git'])

export default class KernelCheck extends BaseCommand {
  static summary = 'Say, per CVM feature and guest fix, whether a kernel has it, needs a backport, or needs config options.'
  static description = `Give a version (5.4.0, 5.10.223, 6.1) to check it against the first mainline and stable releases
with each feature; a .config to check its options as well; a source tree (a folder) to read what it
contains: each guest fix of kernels/fixes.yaml present or missing, judged from the code, not the
version (distro trees carry fixes at old version numbers); or a recipe id to fetch its kernel source
and apply its series (both cached, as build does): each fix present, missing, or added by the series.`
  static examples = [
    '<%= config.bin %> kernel check 5.4.0',
    '<%= config.bin %> kernel check /boot/config-$(uname -r) --json',
    '<%= config.bin %> kernel check ~/src/linux-5.4.59',
    '<%= config.bin %> kernel check backport-5.4 --kernel-source-file old-kernels.tar.zst',
    '<%= config.bin %> kernel check 6.1 --feature sev --feature sev-es',
  ]
  static args = {kernel: Args.string({description: 'a kernel version, the path of a kernel .config or source tree, or a recipe id', required: true})}
  static flags = {
    feature: Flags.string({description: 'check only this feature (kernels/features/<name>.yaml); repeatable', multiple: true}),
    // recipe checks: the kernel stages of a build read these as build does
    ...CHECK_OPTIONS.flags,
  }

  async run(): Promise<KernelCheckResult> {
    const {args, flags} = await this.parse(KernelCheck)
    const dirs = this.dirs(flags.root)
    const o = CHECK_OPTIONS.parse(flags)
    let result: KernelCheckResult
    if (existsSync(args.kernel) && statSync(args.kernel).isDirectory()) {
      result = await checkTree(dirs.kernels, args.kernel, {featureNames: flags.feature})
    } else if (!existsSync(args.kernel) && new RecipeStore(dirs).ids().includes(args.kernel)) {
      const {ctx, cache} = makeBuildContext(dirs, args.kernel, o)
      requireSourceInputs(ctx.recipe.recipe.kernel.source, o['kernel-source-file'], distroOf(ctx.recipe.recipe))
      const renderer = chooseRenderer({json: this.jsonEnabled(), isTTY: Boolean(process.stderr.isTTY), ci: Boolean(process.env.CI)})
      // the kernel stages alone: a tree check needs no rootfs
      const checked = await runInterruptible((signal) => checkRecipeKernel(ctx, cache, {featureNames: flags.feature, renderer, signal}), {
        what: `kernel check of ${args.kernel}`,
        hint: 'run the same command again: it resumes from the last finished stage (an interrupted stage leaves no cache entry)',
      })
      // the stages ran, so the source is there: a missing one would have thrown
      if (!checked.result) throw new BugError(`kernel check of ${args.kernel}: the kernel-source stage gave no tree`)
      result = checked.result
    } else {
      result = await checkKernel(dirs.kernels, args.kernel, flags.feature)
    }
    if (!this.jsonEnabled()) this.log(renderCheck(result))
    return result
  }
}
