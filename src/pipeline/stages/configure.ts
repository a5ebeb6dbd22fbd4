import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {configureKernel} from '../../kernel/configure.js'
import {distroFor} from '../../distro/index.js'
import {BugError} from '../../errors.js'
import {checkBuilt} from '../../kernel/check.js'
import {loadFeatures} from '../../kernel/features.js'
import {RECORDED_FEATURES, toGuestSupport} from '../../kernel/guest-support.js'
import {fragmentNames, optionsFragment, renderFragments, requirements} from '../../kernel/fragments.js'
import {treeVersion} from '../../kernel/version.js'
import type {KernelSourceSpec, Recipe} from '../../recipe/schema.js'
import {atomicWriteFile, sha256} from '../../util/fsx.js'
import type {StageIO, StageOf} from '../stage.js'

type KernelConfigSpec = Recipe['kernel']['config']

/** The kernel .config: base + feature fragments -> olddefconfig -> every required option proven: out/config. */
/** The config base and features, their files' digests, and the options the recipe sets. */
export interface ConfigureInputs {
  base: KernelConfigSpec['base']
  /** base distro: the kernel source whose distribution config is read, and the family whose module reads it */
  source?: KernelSourceSpec
  family?: string
  features: string[]
  options: KernelConfigSpec['options']
  featureFiles: Record<string, string>
  templates: Record<string, string>
}

export const configureStage: StageOf<'configure', ConfigureInputs, 'patch'> = {
  name: 'configure',
  title: 'configure',
  code: import.meta.url,
  needs: ['patch'],
  async inputs(ctx) {
    const {config} = ctx.recipe.recipe.kernel
    const features = await loadFeatures(ctx.dirs.kernels, config.features)
    const templates = fragmentNames(config.base, features)
    return {
      base: config.base,
      // base distro reads the distribution's config of the same package and suite, or of the same source RPM (its sha256)
      ...(config.base === 'distro' ? {source: ctx.recipe.recipe.kernel.source, family: ctx.recipe.recipe.distro.family} : {}),
      features: config.features,
      options: config.options,
      // and those of the features every build records (RECORDED_FEATURES): they judge the built kernel
      featureFiles: await digests([...new Set([...features, ...(await loadFeatures(ctx.dirs.kernels, RECORDED_FEATURES))].map((f) => f.file))]),
      templates: await digests(templates.map((t) => join(ctx.dirs.templates, 'kernel', t))),
    }
  },
  async run(io, config) {
    const {dirs} = io.env
    const tree = join(io.upstream.patch.dir, 'tree')
    // the features' files are read again to render them; their digests (inputs.featureFiles) made the key
    const features = await loadFeatures(dirs.kernels, config.features)
    const version = await treeVersion(tree)
    const fragments = await renderFragments(dirs.templates, config.base, features, {version})
    if (Object.keys(config.options).length) fragments.push(optionsFragment(config.options))
    io.progress(`${config.base} + ${config.features.join(', ')} -> olddefconfig`)
    const result = await configureKernel({
      tree,
      objdir: join(io.work, 'obj'),
      base: config.base,
      distroConfig: config.source ? await distroConfig(config.family ?? '', config.source, io) : undefined,
      fragments,
      requirements: requirements(fragments, features),
      logFile: io.logFile,
      signal: io.signal,
    })
    await atomicWriteFile(join(io.out, 'config'), result.config)
    io.log(`verified ${result.verified.length} options: ${result.verified.join(' ')}`)
    // what `kernel check` says of this tree with this .config: the release's cloud flags follow it
    const support = toGuestSupport(await checkBuilt(dirs.kernels, tree, result.config, RECORDED_FEATURES))
    io.log(`kernel check of the built config: ${support.features.map((f) => `${f.feature} ${f.status}`).join(', ')}`)
    return {base: config.base, features: config.features, digest: result.digest, verified: result.verified, support}
  },
}

async function digests(files: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const f of files) out[f.split('/').slice(-2).join('/')] = sha256(await readFile(f))
  return out
}

/** The distribution's own config, for base "distro": the recipe's distro module reads it from the source. */
async function distroConfig(family: string, source: KernelSourceSpec, io: StageIO<'patch'>): Promise<string> {
  const distro = distroFor(family)
  if (!distro.distroConfig || !distro.distroConfigFrom[source.kind]) throw new BugError(`config base distro with a ${source.kind} source reached the configure stage of a ${distro.name} recipe, which the recipe check refuses`)
  const dest = join(io.work, 'distro.config')
  // a source RPM given with --kernel-source-file is read again for its config; its pin is in the key
  const what = await distro.distroConfig(source, {cacheDir: io.env.cacheDir, localFile: io.env.kernelSourceFile, work: io.work, logFile: io.logFile, signal: io.signal, progress: io.progress}, dest)
  io.log(`distro config: ${what}`)
  return dest
}
