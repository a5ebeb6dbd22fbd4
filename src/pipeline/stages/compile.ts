import {join} from 'node:path'

import {compileKernel} from '../../kernel/compile.js'
import {atomicWriteFile} from '../../util/fsx.js'
import type {CompileResult} from '../results.js'
import type {StageOf} from '../stage.js'

/** make with ccache and reproducible build variables: out/vmlinuz, System.map, config, modules/, kernel.json. */
export const compileStage: StageOf<'compile', {localversion: string; sourceDateEpoch: number}, 'kernel-source' | 'patch' | 'configure'> = {
  name: 'compile',
  title: 'compile',
  code: import.meta.url,
  needs: ['kernel-source', 'patch', 'configure'],
  // -j and ccache (its remote store too) change how fast, not what: they are not inputs.
  inputs: (ctx) => ({
    localversion: ctx.recipe.recipe.kernel.localversion,
    sourceDateEpoch: ctx.recipe.recipe.source_date_epoch,
  }),
  async run(io, {localversion, sourceDateEpoch}) {
    const {patch, configure} = io.upstream
    const source = io.upstream['kernel-source']
    const built = await compileKernel({
      tree: join(patch.dir, 'tree'),
      config: join(configure.dir, 'config'),
      work: io.work,
      out: io.out,
      sourceDateEpoch,
      localversion,
      jobs: io.env.jobs ?? 2,
      ccacheDir: join(io.env.cacheDir, 'ccache'),
      ccacheRemote: io.env.ccacheRemote,
      statsDir: join(io.env.cacheDir, 'kbuild-stats'),
      logFile: io.logFile,
      signal: io.signal,
      progress: io.progress,
    })
    const kernel: CompileResult = {
      release: built.release,
      version: source.meta.version,
      sourceDigest: source.meta.digest,
      patches: patch.meta.applied,
      configDigest: configure.meta.digest,
      vmlinuzSha256: built.vmlinuzSha256,
      ...(configure.meta.support ? {support: configure.meta.support} : {}),
    }
    await atomicWriteFile(join(io.out, 'kernel.json'), JSON.stringify(kernel, null, 2) + '\n')
    io.log(`built ${built.release}: ${built.objects} objects, ${built.modules} modules, vmlinuz sha256 ${built.vmlinuzSha256}`)
    const {local, remote, miss} = built.ccache
    io.log(`ccache: ${local} local hits, ${remote} from ${io.env.ccacheRemote ? `the remote ${io.env.ccacheRemote.shownAs}` : 'a remote (none given)'}, ${miss} compiled`)
    return kernel
  },
}
