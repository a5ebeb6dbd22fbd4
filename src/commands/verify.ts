import {Args} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {optionSet} from '../cli/flags.js'
import {runInterruptible} from '../cli/interrupt.js'
import {verifyRelease, type VerifyResult} from '../publish/index.js'

// the release's target is reached as publish reaches it, by the same options
const VERIFY_OPTIONS = optionSet(['publish-host-key', 'publish-identity', 'publish-identity-passphrase-file', 'key'], {'publish-host-key': {aliases: ['host-key']}, 'publish-identity': {aliases: ['identity']}})

export default class Verify extends BaseCommand {
  static summary = 'Verify a published release where it lies: every file against the sha256 its manifest.json records.'
  static description = `Hashes each artifact and the provenance at the release directory (a directory, or over SFTP: with
sha256sum or openssl on the server when the account runs commands, else by reading the bytes back) and checks
SHA256SUMS against manifest.json. With --key, the signatures too: SHA256SUMS.gpg against an OpenPGP public key
(gpgv, with a keyring made from it in a temporary directory), provenance.intoto.json and validation.intoto.json
(DSSE envelopes) against a PEM public key; each signature of a kind given must be there and good. Exit code 0:
the release is intact; 4: a file differs or is missing, or a signature is bad or missing (each one named); 1: the
target could not be read.`
  static examples = [
    '<%= config.bin %> verify out/debian-12/1735689600-3f2a9c1b7d4e',
    '<%= config.bin %> verify out/debian-12/1735689600-3f2a9c1b7d4e --key release-key.pub.asc --key attestation-key.pub.pem',
    '<%= config.bin %> verify sftp://release@images.example.com/cvm/debian-12/1.0 --publish-host-key SHA256:... --json',
  ]
  static args = {release: Args.string({description: 'the release directory: <target>/<recipe id>/<version> (dir:PATH, PATH or sftp://user@host[:port]/path)', required: true})}
  static flags = {
    // the release's target is reached as publish reaches it, by the same options (src/pipeline/options.ts)
    ...VERIFY_OPTIONS.flags,
  }

  async run(): Promise<VerifyResult> {
    const {args, flags} = await this.parse(Verify)
    const o = VERIFY_OPTIONS.parse(flags)
    const result = await runInterruptible(
      (signal) =>
        verifyRelease(args.release, {
          signal,
          ssh: {...o['publish-host-key'], privateKey: o['publish-identity'], passphraseFile: o['publish-identity-passphrase-file'], identityFlag: '--publish-identity'},
          keys: o.key,
          log: (line) => this.jsonEnabled() || process.stderr.write(`${line}\n`),
        }),
      {what: `verify of ${args.release}`, hint: 'run it again: verify changes nothing'},
    )
    if (!this.jsonEnabled()) {
      this.log(`${result.recipeId} ${result.version} at ${result.location}: intact`)
      for (const f of result.files) this.log(`  ${f.verdict.padEnd(7)} ${f.sha256}  ${f.name}`)
      for (const s of result.signatures) this.log(`  ${s.verdict.padEnd(7)} ${s.name}: ${s.detail}`)
    }
    return result
  }
}
