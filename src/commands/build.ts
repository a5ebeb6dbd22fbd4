import {Args} from '@oclif/core'

import {runBuild, type BuildRequest, type BuildResult} from '../service/service.js'
import {BaseCommand} from '../cli/base-command.js'
import {makeBuildContext} from '../cli/build-context.js'
import {runInterruptible} from '../cli/interrupt.js'
import {BUILD_INPUTS, optionSet} from '../cli/flags.js'
import {InputError} from '../errors.js'
import {chooseRenderer} from '../pipeline/run.js'

export type {BuildResult} from '../service/service.js'

/** build's options: what the stages read, then how the build runs and where it publishes (src/pipeline/options.ts) */
const BUILD_FLAGS = [...BUILD_INPUTS, 'until', 'lock-timeout', 'publish', 'no-publish', 'publish-host-key', 'publish-identity', 'publish-identity-passphrase-file', 'allow-unvalidated'] as const
const BUILD_OPTIONS = optionSet(BUILD_FLAGS)

export default class Build extends BaseCommand {
  static summary = 'Build, validate and publish a CVM image from a recipe.'
  static description = `Runs the stages base, kernel-source, patch, configure, compile, assemble and validate from the
cache (a stage whose inputs did not change is not run again), then publishes the validated image.
Ctrl-C stops the build; the next build resumes from the last finished stage.

With --control the series is applied without its backports (build fixes only) and the unpatched
kernel is validated: its report shows what the backports fix. A control build is never published
and exits 0 once validation has a verdict, passed or failed (read validation.verdict with --json).`
  static examples = [
    '<%= config.bin %> build debian-12',
    '<%= config.bin %> build debian-12 --publish sftp://release@images.example.com/cvm --publish-host-key SHA256:...',
    '<%= config.bin %> build debian-12 --force compile --no-publish --json',
    '<%= config.bin %> build backport-5.4 --kernel-source-file old-kernels.tar.zst --control --json',
  ]
  static args = {id: Args.string({description: 'recipe id (see `cvm-image recipes`)', required: true})}
  static flags = BUILD_OPTIONS.flags

  async run(): Promise<BuildResult> {
    const {args, flags} = await this.parse(Build)
    // every option is parsed and checked before the recipe is read or any stage runs (exit 2, nothing written)
    const o = BUILD_OPTIONS.parse(flags)
    const {ctx, cache} = makeBuildContext(this.dirs(flags.root), args.id, o)
    if (o.control && flags.publish !== undefined && !o['no-publish']) {
      throw new InputError('--control builds are never published: --publish cannot go with --control', {hint: 'drop --publish (a control build stops after validation)'})
    }
    const request: BuildRequest = {
      ctx,
      cache,
      force: o.force ?? [],
      until: o.until,
      lockTimeoutMs: o['lock-timeout'],
      renderer: chooseRenderer({json: this.jsonEnabled(), isTTY: Boolean(process.stdout.isTTY), ci: Boolean(process.env.CI)}),
      publish:
        o['no-publish'] || o.until || o.control
          ? undefined
          : {target: o.publish, allowUnvalidated: o['allow-unvalidated'], ssh: {...o['publish-host-key'], privateKey: o['publish-identity'], passphraseFile: o['publish-identity-passphrase-file'], identityFlag: '--publish-identity'}},
      log: (line) => this.jsonEnabled() || process.stderr.write(`${line}\n`),
    }
    const result = await runInterruptible((signal) => runBuild({...request, signal}), {
      what: `build of ${ctx.recipe.recipe.id}`,
      hint: 'run the same command again: it resumes from the last finished stage (an interrupted stage leaves no cache entry)',
    })
    if (!this.jsonEnabled()) this.summarize(result)
    return result
  }

  private summarize(r: BuildResult): void {
    if (r.control) this.log(`\n${r.recipe}: CONTROL build (series off but for its build fixes; not published)`)
    const count = (status: string) => r.stages.filter((s) => s.status === status).length
    const remote = (count('remote') ? `, ${count('remote')} from the remote cache` : '') + (count('remote-only') ? `, ${count('remote-only')} left in the registry (nothing here reads them)` : '')
    this.log(`\n${r.recipe}: ${count('ran')} stage(s) ran, ${count('cached')} cached${remote}`)
    for (const s of r.stages) this.log(`  ${s.stage.padEnd(14)} ${s.status.padEnd(6)} ${s.seconds.toFixed(1).padStart(7)}s  ${s.status === 'remote-only' ? `(not pulled) ${s.dir}` : s.dir}`)
    this.log(`build record: ${r.buildRecord}`)
    const v = r.validation
    if (v) {
      this.log(`validation: ${v.verdict}`)
      if (r.control) {
        this.log(
          v.verdict === 'failed'
            ? '  control: the kernel without the backports fails validation: the failures below are what the series fixes'
            : '  control: the kernel without the backports passed: this validation does not show what the series fixes',
        )
      }
      for (const c of v.checks) this.log(`  ${c.verdict.padEnd(4)} ${c.mode}/${c.name}${c.evidence ? `: ${c.evidence.split('\n')[0].slice(0, 100)}` : ''}`)
    }
    const p = r.published
    if (p) {
      this.log(`${p.unchanged ? 'already published' : 'published'}: ${p.location}`)
      for (const f of p.files) this.log(`  ${f.action.padEnd(8)} ${f.name}`)
    }
  }
}
