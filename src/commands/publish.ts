import {join} from 'node:path'

import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {cacheDirFlag, resolveCacheDir} from '../cli/flags.js'
import {runInterruptible} from '../cli/interrupt.js'
import {readBuildRecord} from '../pipeline/build-record.js'
import {publish, DEFAULT_TARGET, type PublishResult} from '../publish/index.js'
import {IMAGE_FORMATS, type ImageFormat} from '../recipe/schema.js'
import {hostKeyPinFromFlag} from '../remote/ssh.js'

export default class Publish extends BaseCommand {
  static summary = 'Publish a built image: its formats, manifest.json, SHA256SUMS and SLSA provenance.'
  static description = `Publishes under <target>/<recipe id>/<version>/. Each file is uploaded under a temp name, verified by
sha256 at the target and renamed; manifest.json comes last. A re-run completes an interrupted release, an identical
re-run uploads nothing, and different bytes under an existing version are refused (exit 4). A re-run hashes every
file already at the target: a damaged file of this very release is put back (repaired). An image whose
validation failed or did not run is refused unless --allow-unvalidated (recorded in the manifest). A target that
cannot be written fails with exit 1. \`cvm-image verify\` checks a published release on its own.`
  static examples = [
    '<%= config.bin %> publish debian-12',
    '<%= config.bin %> publish debian-12 --to dir:/srv/images',
    '<%= config.bin %> publish debian-12 --to sftp://release@images.example.com/cvm --host-key SHA256:... --identity ~/.ssh/id_ed25519',
    '<%= config.bin %> publish ~/.cache/cvm-image/builds/debian-12.json --json',
  ]
  static args = {build: Args.string({description: 'recipe id (its last build in the cache) or the path of a build record (.json)', required: true})}
  static flags = {
    to: Flags.string({description: 'a directory (dir:PATH or PATH) or sftp://user@host[:port]/path', default: DEFAULT_TARGET}),
    'host-key': Flags.string({description: 'the SFTP target\'s pinned key: SHA256:<base64> fingerprint, or a known_hosts file [default: ~/.ssh/known_hosts]'}),
    identity: Flags.file({description: 'SSH private key for the SFTP target [default: the ssh-agent at $SSH_AUTH_SOCK]', exists: true}),
    'allow-unvalidated': Flags.boolean({description: 'publish even if validation failed or did not run (recorded in the manifest)'}),
    format: Flags.string({description: 'publish this format instead of the recipe\'s (repeatable)', options: [...IMAGE_FORMATS], multiple: true}),
    'cache-dir': cacheDirFlag,
  }

  async run(): Promise<PublishResult> {
    const {args, flags} = await this.parse(Publish)
    const cacheDir = resolveCacheDir(flags['cache-dir'])
    const record = await readBuildRecord(cacheDir, args.build)
    let lastShown = 0
    const result = await runInterruptible(
      (signal) =>
        publish(record, flags.to, {
          allowUnvalidated: flags['allow-unvalidated'],
          formats: flags.format as ImageFormat[] | undefined,
          stagingDir: join(cacheDir, 'publish'),
          ssh: {...hostKeyPinFromFlag(flags['host-key']), privateKey: flags.identity},
          signal,
          log: (line) => this.jsonEnabled() || process.stderr.write(`${line}\n`),
          onProgress: ({file, done, total}) => {
            if (this.jsonEnabled() || !process.stderr.isTTY || Date.now() - lastShown < 500) return
            lastShown = Date.now()
            process.stderr.write(`\r${file}: ${Math.floor((100 * done) / total)}%  `)
          },
        }),
      {
        what: `publish of ${record.recipeId} to ${flags.to}`,
        hint: 'run the same command again: it resumes the partial upload, and nothing incomplete is visible under a final name',
      },
    )
    if (!this.jsonEnabled()) this.summarize(result)
    return result
  }

  private summarize(r: PublishResult): void {
    this.log(`${r.recipeId} ${r.version} ${r.unchanged ? 'was already published' : 'published'} at ${r.location}`)
    for (const f of r.files) this.log(`  ${f.action.padEnd(8)} ${f.sha256}  ${f.name}`)
    this.log(`  guestOsFeatures: ${r.manifest.gce.guestOsFeatures.map((g) => g.type).join(', ')}`)
    if (r.manifest.validation.allowedUnvalidated) this.log(`  NOT VALIDATED (validation ${r.manifest.validation.status}); published with --allow-unvalidated`)
  }
}
