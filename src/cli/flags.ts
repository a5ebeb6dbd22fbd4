import {homedir} from 'node:os'
import {join, resolve} from 'node:path'

import {Flags} from '@oclif/core'

import {VALIDATION_MODES} from '../recipe/schema.js'

/** ~/.cache/cvm-image, or $XDG_CACHE_HOME/cvm-image. */
export function defaultCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'cvm-image')
}

export const cacheDirFlag = Flags.directory({
  description: 'where stage outputs are cached [default: $XDG_CACHE_HOME/cvm-image or ~/.cache/cvm-image]',
  env: 'CVM_IMAGE_CACHE',
})

export function resolveCacheDir(flag: string | undefined): string {
  return resolve(flag ?? defaultCacheDir())
}

/** Flags that change what a build reads; plan and build share them so plan's keys are build's keys. */
export const buildInputFlags = {
  'cache-dir': cacheDirFlag,
  'kernel-git': Flags.string({description: 'kernel git (local clone or URL) to resolve upstream commits of the series from', env: 'CVM_IMAGE_KERNEL_GIT'}),
  'base-sha256': Flags.string({description: 'sha256 you vouch for when the recipe\'s base image is unpinned'}),
  'base-file': Flags.file({description: 'a local copy of the recipe\'s base image to use instead of downloading it', exists: true}),
  'kernel-source-file': Flags.file({description: 'a local copy of the recipe\'s kernel source archive (checked against its sha256): needed for kernel.source kind archive, used instead of downloading a tarball or source RPM', exists: true}),
  control: Flags.boolean({description: 'control build: apply only the series\' build fixes, to validate the unpatched kernel and show what the backports fix (never published)'}),
  mode: Flags.string({description: 'validation mode to run instead of the recipe\'s (repeatable)', options: [...VALIDATION_MODES], multiple: true}),
  host: Flags.string({description: 'validate on this AMD host over SSH (user@host[:port]) instead of locally'}),
  'host-key': Flags.string({description: 'the validation host\'s pinned key: SHA256:<base64> fingerprint, or a known_hosts file [default: ~/.ssh/known_hosts]'}),
  identity: Flags.file({description: 'SSH private key for the validation host [default: the ssh-agent at $SSH_AUTH_SOCK]', exists: true}),
  'signing-key': Flags.file({description: 'sign the UKI for UEFI Secure Boot with this RSA private key (PEM, not encrypted; read only to sign, never copied into the cache or the release)', exists: true, dependsOn: ['signing-cert']}),
  'signing-cert': Flags.file({description: 'the X.509 certificate of --signing-key, as the firmware\'s signature database (db) holds it: in the stage key and the manifest', exists: true, dependsOn: ['signing-key']}),
  'secure-boot-vars': Flags.file({
    description: "validate the signed UKI under Secure Boot too, with a copy of this OVMF 4M variable store that enrolls --signing-cert in db [default for Debian's snakeoil certificate: its OVMF_VARS_4M.snakeoil.fd; for another certificate the check is skipped]",
    exists: true,
    dependsOn: ['signing-cert'],
  }),
  'no-validate': Flags.boolean({description: 'skip validation (every check reported skipped; publish then needs --allow-unvalidated)'}),
  jobs: Flags.integer({description: 'parallel compile jobs [default: the number of cores]', min: 1}),
  force: Flags.string({description: 'rerun this stage even if cached (repeatable; "all" for every stage)', multiple: true}),
}
