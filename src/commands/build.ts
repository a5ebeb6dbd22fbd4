import {Args, Flags} from '@oclif/core'

import {join} from 'node:path'

import {BaseCommand, type BaseFlags} from '../cli/base-command.js'
import {makeBuildContext} from '../cli/build-context.js'
import {runInterruptible} from '../cli/interrupt.js'
import {buildInputFlags} from '../cli/flags.js'
import {InputError, StageError} from '../errors.js'
import {writeBuildRecord, type BuildRecord} from '../pipeline/build-record.js'
import {parseForce} from '../pipeline/plan.js'
import {chooseRenderer, runStages, type StageOutcome} from '../pipeline/run.js'
import type {StageCache} from '../pipeline/cache.js'
import type {ValidateResult} from '../pipeline/results.js'
import {STAGE_NAMES, type BuildContext, type StageName} from '../pipeline/stage.js'
import {STAGES} from '../pipeline/stages/index.js'
import {requireSourceInputs} from '../kernel/source.js'
import {publish, type PublishResult} from '../publish/index.js'
import {hostKeyPinFromFlag} from '../remote/ssh.js'
import {toolVersion} from '../version.js'

export interface BuildResult {
  recipe: string
  /** a control build (--control): the series off but for its build fixes; never published */
  control: boolean
  recipeDigest: string
  buildRecord: string
  stages: StageOutcome[]
  validation?: ValidateResult
  published?: PublishResult
}

type BuildFlags = BaseFlags<typeof Build>

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
  static flags = {
    ...buildInputFlags,
    publish: Flags.string({description: 'where to publish: a directory (dir:PATH or PATH) or sftp://user@host[:port]/path', default: './out'}),
    'no-publish': Flags.boolean({description: 'stop after validation'}),
    'publish-host-key': Flags.string({description: 'the SFTP target\'s pinned key: SHA256:<base64> fingerprint, or a known_hosts file [default: ~/.ssh/known_hosts]'}),
    'publish-identity': Flags.file({description: 'SSH private key for the SFTP target [default: the ssh-agent at $SSH_AUTH_SOCK]', exists: true}),
    'allow-unvalidated': Flags.boolean({description: 'publish even if validation failed or was skipped (recorded in the manifest)'}),
    until: Flags.string({description: 'stop after this stage (its build record is builds/<id>.partial.json; builds/<id>.json stays the last complete build)', options: [...STAGE_NAMES]}),
    'lock-timeout': Flags.integer({description: 'seconds to wait for another build holding a stage lock', default: 6 * 3600}),
  }

  async run(): Promise<BuildResult> {
    const {args, flags} = await this.parse(Build)
    const {ctx, cache} = makeBuildContext(this.dirs(flags.root), args.id, flags)
    const {recipe} = ctx.recipe
    if (recipe.abstract) throw new InputError(`recipe ${args.id} is abstract: it is only extended by other recipes`, {hint: 'build one of the recipes `cvm-image recipes` lists'})

    if (flags.control && flags.publish !== './out' && !flags['no-publish']) {
      throw new InputError('--control builds are never published: --publish cannot go with --control', {hint: 'drop --publish (a control build stops after validation)'})
    }
    requireSourceInputs(recipe.kernel.source, flags['kernel-source-file'])
    return runInterruptible((signal) => this.build(flags, ctx, cache, signal), {
      what: `build of ${recipe.id}`,
      hint: 'run the same command again: it resumes from the last finished stage (an interrupted stage leaves no cache entry)',
    })
  }

  private async build(flags: BuildFlags, ctx: BuildContext, cache: StageCache, signal: AbortSignal): Promise<BuildResult> {
    const {recipe} = ctx.recipe
    const renderer = chooseRenderer({json: this.jsonEnabled(), isTTY: Boolean(process.stdout.isTTY), ci: Boolean(process.env.CI)})
    const {results, outcomes} = await runStages(ctx, cache, STAGES, {
      force: parseForce(flags.force),
      renderer,
      signal,
      lockTimeoutMs: flags['lock-timeout'] * 1000,
      until: flags.until as StageName | undefined,
    })
    const record: BuildRecord = {
      recipeId: recipe.id,
      recipeDigest: ctx.recipe.digest,
      recipe,
      toolVersion: toolVersion(),
      sourceDateEpoch: recipe.source_date_epoch,
      finishedAt: new Date().toISOString(),
      stages: results,
    }
    // a build stopped before the last stage must not replace the record of the last complete build, which publish reads
    const partial = flags.until !== undefined && flags.until !== STAGE_NAMES.at(-1)
    const buildRecord = await writeBuildRecord(cache.root, record, {partial, control: flags.control})
    const validation = results.validate?.meta
    const result: BuildResult = {recipe: recipe.id, control: Boolean(flags.control), recipeDigest: ctx.recipe.digest, buildRecord, stages: outcomes, validation}
    const verdict = validation?.verdict
    if (verdict === 'failed' && !flags.control) {
      if (!this.jsonEnabled()) this.summarize(result)
      throw new StageError(`validation of ${recipe.id} failed`, {hint: `see ${results.validate?.dir}/report.json and serial.log`})
    }
    if (!flags['no-publish'] && !flags.until && !flags.control) {
      result.published = await publish(record, flags.publish, {
        allowUnvalidated: flags['allow-unvalidated'],
        stagingDir: join(cache.root, 'publish'),
        ssh: {...hostKeyPinFromFlag(flags['publish-host-key']), privateKey: flags['publish-identity']},
        signal,
        log: (line) => this.jsonEnabled() || process.stderr.write(`${line}\n`),
      })
    }
    if (!this.jsonEnabled()) this.summarize(result)
    return result
  }

  private summarize(r: BuildResult): void {
    if (r.control) this.log(`\n${r.recipe}: CONTROL build (series off but for its build fixes; not published)`)
    this.log(`\n${r.recipe}: ${r.stages.filter((s) => s.status === 'ran').length} stage(s) ran, ${r.stages.filter((s) => s.status === 'cached').length} cached`)
    for (const s of r.stages) this.log(`  ${s.stage.padEnd(14)} ${s.status.padEnd(6)} ${s.seconds.toFixed(1).padStart(7)}s  ${s.dir}`)
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
