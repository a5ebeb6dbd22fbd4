import {join} from 'node:path'

import {BugError} from '../../errors.js'
import {compileKernel} from '../../kernel/compile.js'
import {atomicWriteFile, type Json} from '../../util/fsx.js'
import type {Stage} from '../stage.js'

/** make with ccache and reproducible build variables: out/vmlinuz, System.map, config, modules/, kernel.json. */
export const compileStage: Stage = {
  name: 'compile',
  title: 'compile',
  version: 1,
  needs: ['kernel-source', 'patch', 'configure'],
  // -j and ccache change how fast, not what: they are not inputs.
  inputs: (ctx) => ({
    localversion: ctx.recipe.recipe.kernel.localversion,
    sourceDateEpoch: ctx.recipe.recipe.source_date_epoch,
  }),
  async run(ctx, io) {
    const {patch, configure} = io.upstream
    const source = io.upstream['kernel-source']
    if (!patch || !configure || !source) throw new BugError('compile stage ran without its upstream results')
    const built = await compileKernel({
      tree: join(patch.dir, 'tree'),
      config: join(configure.dir, 'config'),
      work: io.work,
      out: io.out,
      sourceDateEpoch: ctx.recipe.recipe.source_date_epoch,
      localversion: ctx.recipe.recipe.kernel.localversion,
      jobs: ctx.options.jobs ?? 2,
      ccacheDir: join(ctx.cacheDir, 'ccache'),
      statsDir: join(ctx.cacheDir, 'kbuild-stats'),
      logFile: io.logFile,
      signal: io.signal,
      progress: io.progress,
    })
    const sourceMeta = source.meta as {version: string; digest: string}
    const patchMeta = patch.meta as {applied: Json[]}
    const kernel = {
      release: built.release,
      version: sourceMeta.version,
      sourceDigest: sourceMeta.digest,
      patches: patchMeta.applied,
      configDigest: (configure.meta as {digest: string}).digest,
      vmlinuzSha256: built.vmlinuzSha256,
    }
    await atomicWriteFile(join(io.out, 'kernel.json'), JSON.stringify(kernel, null, 2) + '\n')
    io.log(`built ${built.release}: ${built.objects} objects, ${built.modules} modules, vmlinuz sha256 ${built.vmlinuzSha256}`)
    return kernel
  },
}
