import {availableParallelism} from 'node:os'

import type {BuildContext, BuildOptions} from '../pipeline/stage.js'
import {checkSigningPair} from '../disk/secure-boot.js'
import {StageCache} from '../pipeline/cache.js'
import {RecipeStore, type ProjectDirs} from '../recipe/load.js'
import {hostKeyPinFromFlag} from '../remote/ssh.js'
import {resolveCacheDir} from './flags.js'

export interface BuildInputFlagValues {
  'cache-dir'?: string
  'kernel-git'?: string
  'base-sha256'?: string
  'base-file'?: string
  'kernel-source-file'?: string
  control?: boolean
  mode?: string[]
  host?: string
  'host-key'?: string
  identity?: string
  'no-validate'?: boolean
  'signing-key'?: string
  'signing-cert'?: string
  'secure-boot-vars'?: string
  jobs?: number
}

export function buildOptions(f: BuildInputFlagValues): BuildOptions {
  return {
    kernelGit: f['kernel-git'],
    baseSha256: f['base-sha256'],
    baseFile: f['base-file'],
    kernelSourceFile: f['kernel-source-file'],
    control: f.control || undefined,
    modes: f.mode,
    validateHost: f.host,
    // one meaning of --host-key in every command: a SHA256 fingerprint, else a known_hosts file
    validateHostKey: hostKeyPinFromFlag(f['host-key']),
    validateIdentity: f.identity,
    skipValidation: f['no-validate'] || undefined,
    signingKey: f['signing-key'],
    signingCert: f['signing-cert'],
    secureBootVars: f['secure-boot-vars'],
    jobs: f.jobs ?? availableParallelism(),
  }
}

/** Loads and checks the recipe (all problems at once) and the cache a command works on. */
export function makeBuildContext(dirs: ProjectDirs, recipeId: string, f: BuildInputFlagValues): {ctx: BuildContext; cache: StageCache} {
  const recipe = new RecipeStore(dirs).load(recipeId)
  // a key and certificate that cannot sign are refused before any work (exit 2)
  if (f['signing-key'] && f['signing-cert']) checkSigningPair({keyFile: f['signing-key'], certFile: f['signing-cert']})
  const cacheDir = resolveCacheDir(f['cache-dir'])
  return {ctx: {recipe, dirs, options: buildOptions(f), cacheDir}, cache: new StageCache(cacheDir)}
}
