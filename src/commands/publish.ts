import {join} from 'node:path'

import {Args} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {optionSet, resolveCacheDir} from '../cli/flags.js'
import {runInterruptible} from '../cli/interrupt.js'
import {readBuildRecord} from '../pipeline/build-record.js'
import {StageCache} from '../pipeline/cache.js'
import {completeFromRegistry} from '../pipeline/complete-record.js'
import {registryFormatShare} from '../pipeline/format-share.js'
import {stderrWarning} from '../pipeline/run.js'
import {openRemoteCaches} from '../pipeline/open-remote-cache.js'
import {describeTarget, publish, STAGES_PUBLISH_READS, type PublishResult} from '../publish/index.js'
import {sha256MemoDir} from '../util/extent-hash.js'

const PUBLISH_FLAGS = [
  'publish',
  'publish-host-key',
  'publish-identity',
  'publish-identity-passphrase-file',
  'allow-unvalidated',
  'format',
  'release-key',
  'release-key-passphrase-file',
  'attestation-key',
  'attestation-key-passphrase-file',
  'cache-dir',
  'cache-from',
  'cache-to',
  'cache-key',
  'cache-trust',
  'cache-ca',
] as const

const PUBLISH_OPTIONS = optionSet(PUBLISH_FLAGS, {
  // publish's own names before every command named an option alike (build's --host-key is the validation host's)
  publish: {aliases: ['to']},
  'publish-host-key': {aliases: ['host-key']},
  'publish-identity': {aliases: ['identity']},
  // publish builds nothing: a registry gives it the entries its build record names that this cache lacks
  'cache-from': {
    help: "take the build record's entries this cache lacks, of the stages publish reads (compile, assemble, validate), and the format files (qcow2, GCE tarball) of its disk not made here, from this OCI registry repository (oci://HOST[:PORT]/REPO): only one signed by a --cache-trust key",
  },
  'cache-to': {help: 'read this OCI registry repository (oci://HOST[:PORT]/REPO) as --cache-from does, and push the format files publish made or found here that it lacks, signed with --cache-key'},
  'cache-key': {help: "the runner's Ed25519 private key in PEM (mode 600) that --cache-to needs: it signs the format files publish pushes, and its public half is trusted"},
})

export default class Publish extends BaseCommand {
  static summary = 'Publish a built image: its formats, manifest.json, SHA256SUMS and SLSA provenance.'
  static description = `Publishes under <target>/<recipe id>/<version>/. Each file is uploaded under a temp name, verified by
sha256 at the target and renamed; manifest.json comes last. A re-run completes an interrupted release, an identical
re-run uploads nothing, and different bytes under an existing version are refused (exit 4). A re-run hashes every
file already at the target: a damaged file of this very release is put back (repaired). An image whose
validation failed or did not run is refused unless --allow-unvalidated (recorded in the manifest). A target that
cannot be written fails with exit 1. \`cvm-image verify\` checks a published release on its own.
With --release-key (an OpenPGP secret key file) SHA256SUMS.gpg, a detached signature of SHA256SUMS, is added; with
--attestation-key (an Ed25519 PEM private key) provenance.intoto.json and validation.intoto.json are DSSE envelopes.
Keys are used in a temporary GNUPGHOME or in memory, never copied into the cache, the logs or the release.
With --cache-from (or --cache-to) a build record made on another runner is published here: the entries it names
of compile, assemble and validate that this cache lacks are pulled from the registry, each signed by a
--cache-trust key and checked by digest, and nothing else; so are the format files (qcow2, the GCE tarball) of
its disk, which --cache-to also pushes (docs/remote-cache.md).`
  static examples = [
    '<%= config.bin %> publish debian-12',
    '<%= config.bin %> publish debian-12 --publish dir:/srv/images',
    '<%= config.bin %> publish debian-12 --publish sftp://release@images.example.com/cvm --publish-host-key SHA256:... --publish-identity ~/.ssh/id_ed25519',
    '<%= config.bin %> publish debian-12 --publish dir:/srv/images --release-key release-key.asc --attestation-key attestation-key.pem',
    '<%= config.bin %> publish ~/.cache/cvm-image/builds/debian-12.json --json',
    '<%= config.bin %> publish runner-a/builds/debian-12.json --cache-from oci://registry.example.com/team/stages --cache-trust team-ci.pub',
  ]
  static args = {build: Args.string({description: 'recipe id (its last build in the cache) or the path of a build record (.json)', required: true})}
  static flags = PUBLISH_OPTIONS.flags

  async run(): Promise<PublishResult> {
    const {args, flags} = await this.parse(Publish)
    const o = PUBLISH_OPTIONS.parse(flags)
    const cacheDir = resolveCacheDir(o['cache-dir'])
    const log = (line: string) => this.jsonEnabled() || process.stderr.write(`${line}\n`)
    // a record whose disk, validation or kernel entry is not here (built on another runner): pulled, verified, from the registry
    const remote = openRemoteCaches({cacheFrom: o['cache-from'], cacheTo: o['cache-to'], cacheKey: o['cache-key'], cacheTrust: o['cache-trust'], cacheCa: o['cache-ca']})
    const {record} = await completeFromRegistry(await readBuildRecord(cacheDir, args.build), new StageCache(cacheDir), remote, STAGES_PUBLISH_READS, stderrWarning)
    let lastShown = 0
    const result = await runInterruptible(
      (signal) =>
        publish(record, o.publish, {
          allowUnvalidated: o['allow-unvalidated'],
          formats: o.format,
          stagingDir: join(cacheDir, 'publish'),
          sha256MemoDir: sha256MemoDir(cacheDir),
          formatShare: registryFormatShare(remote, stderrWarning),
          releaseKey: o['release-key'] ? {keyFile: o['release-key'], passphraseFile: o['release-key-passphrase-file']} : undefined,
          attestationKey: o['attestation-key'] ? {keyFile: o['attestation-key'], passphraseFile: o['attestation-key-passphrase-file']} : undefined,
          ssh: {...o['publish-host-key'], privateKey: o['publish-identity'], passphraseFile: o['publish-identity-passphrase-file'], identityFlag: '--publish-identity'},
          signal,
          log,
          onProgress: ({file, done, total}) => {
            if (this.jsonEnabled() || !process.stderr.isTTY || Date.now() - lastShown < 500) return
            lastShown = Date.now()
            process.stderr.write(`\r${file}: ${Math.floor((100 * done) / total)}%  `)
          },
        }),
      {
        what: `publish of ${record.recipeId} to ${describeTarget(o.publish)}`,
        hint: 'run the same command again: it resumes the partial upload, and nothing incomplete is visible under a final name',
      },
    )
    if (!this.jsonEnabled()) this.summarize(result)
    return result
  }

  private summarize(r: PublishResult): void {
    this.log(`${r.recipeId} ${r.version} ${r.unchanged ? 'was already published' : 'published'} at ${r.location}`)
    for (const f of r.files) this.log(`  ${f.action.padEnd(8)} ${f.sha256}  ${f.name}`)
    const s = r.manifest.signing
    this.log(
      `  signing: ${s.checksums.status === 'signed' ? `SHA256SUMS.gpg by ${s.checksums.fingerprint}` : 'SHA256SUMS unsigned'}; ${s.attestations.status === 'signed' ? `DSSE envelopes by keyid ${s.attestations.keyid}` : 'statements unsigned'}`,
    )
    this.log(`  guestOsFeatures: ${r.manifest.gce.guestOsFeatures.map((g) => g.type).join(', ')}`)
    if (r.manifest.validation.allowedUnvalidated) this.log(`  NOT VALIDATED (validation ${r.manifest.validation.status}); published with --allow-unvalidated`)
  }
}
