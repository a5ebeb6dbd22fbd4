import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {BugError} from '../../errors.js'
import {configureKernel} from '../../kernel/configure.js'
import {fetchDistroConfig} from '../../kernel/distro-config.js'
import {loadFeatures} from '../../kernel/features.js'
import {DISTRO_FIXUPS, LEAN_PROFILE, optionsFragment, renderFragments, requirements} from '../../kernel/fragments.js'
import {treeVersion} from '../../kernel/version.js'
import {atomicWriteFile, sha256, type Json} from '../../util/fsx.js'
import type {BuildContext, Stage} from '../stage.js'

/** The kernel .config: base + feature fragments -> olddefconfig -> every required option proven: out/config. */
export const configureStage: Stage = {
  name: 'configure',
  title: 'configure',
  version: 1,
  needs: ['patch'],
  async inputs(ctx) {
    const {config} = ctx.recipe.recipe.kernel
    const features = await loadFeatures(ctx.dirs.kernels, config.features)
    const templates = [...(config.base === 'lean' ? [LEAN_PROFILE] : config.base === 'distro' ? [DISTRO_FIXUPS] : []), ...new Set(features.map((f) => f.fragment))]
    return {
      base: config.base,
      // base distro reads the distribution's config of the same package and suite
      ...(config.base === 'distro' ? {source: ctx.recipe.recipe.kernel.source as unknown as Json} : {}),
      features: config.features,
      options: config.options,
      featureFiles: await digests(features.map((f) => f.file)),
      templates: await digests(templates.map((t) => join(ctx.dirs.templates, 'kernel', t))),
    }
  },
  async run(ctx, io) {
    const patched = io.upstream.patch
    if (!patched) throw new BugError('configure stage ran without the patch result')
    const tree = join(patched.dir, 'tree')
    const {config} = ctx.recipe.recipe.kernel
    const features = await loadFeatures(ctx.dirs.kernels, config.features)
    const version = await treeVersion(tree)
    const fragments = await renderFragments(ctx.dirs.templates, config.base, features, {version})
    if (Object.keys(config.options).length) fragments.push(optionsFragment(config.options))
    io.progress(`${config.base} + ${config.features.join(', ')} -> olddefconfig`)
    const result = await configureKernel({
      tree,
      objdir: join(io.work, 'obj'),
      base: config.base,
      distroConfig: config.base === 'distro' ? await distroConfig(ctx, io.work, io.log) : undefined,
      fragments,
      requirements: requirements(fragments, features),
      logFile: io.logFile,
      signal: io.signal,
    })
    await atomicWriteFile(join(io.out, 'config'), result.config)
    io.log(`verified ${result.verified.length} options: ${result.verified.join(' ')}`)
    return {base: config.base, features: config.features, digest: result.digest, verified: result.verified}
  },
}

async function digests(files: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const f of files) out[f.split('/').slice(-2).join('/')] = sha256(await readFile(f))
  return out
}

/** The distribution's own config, for base "distro". */
async function distroConfig(ctx: BuildContext, work: string, log: (line: string) => void): Promise<string> {
  const dest = join(work, 'distro.config')
  log(`distro config: ${await fetchDistroConfig(ctx.recipe.recipe.kernel.source, ctx.cacheDir, work, dest)}`)
  return dest
}
