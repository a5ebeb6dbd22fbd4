import {join} from 'node:path'

import {compileKernel, ICECC_CONNECT_WAIT_MS} from '../../kernel/compile.js'
import type {IceccRun} from '../../kernel/icecc.js'
import {atomicWriteFile} from '../../util/fsx.js'
import type {CompileResult} from '../results.js'
import type {StageOf} from '../stage.js'

/** make with ccache and reproducible build variables: out/vmlinuz, System.map, config, modules/, kernel.json. */
export const compileStage: StageOf<'compile', {localversion: string; sourceDateEpoch: number}, 'kernel-source' | 'patch' | 'configure'> = {
  name: 'compile',
  title: 'compile',
  code: import.meta.url,
  needs: ['kernel-source', 'patch', 'configure'],
  // -j, ccache (its remote store too) and icecream change how fast, not what: they are not inputs.
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
      ...(io.env.iceccScheduler ? {icecc: {scheduler: io.env.iceccScheduler, envCacheDir: io.env.cacheDir}} : {}),
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
    if (built.icecc) io.log(iceccLine(built.icecc))
    return kernel
  },
}

/** The stage log's icecream line: where the compiles went (docs/sharing-compiles.md "Icecream"). */
export function iceccLine(i: IceccRun): string {
  const env = `toolchain ${i.environment} (${i.environmentCreated ? 'made for this build' : 'cached'})`
  if (!i.knownAs) return `icecream: the scheduler ${i.scheduler} did not answer within ${ICECC_CONNECT_WAIT_MS / 1000} s: compiled without icecream (the same objects; check that this machine reaches it, TCP port ${i.scheduler.split(':').pop()})`
  return `icecream: scheduler ${i.scheduler} (knows this build as ${i.knownAs}); ${sentLine(i.sentTo)}; ${env}`
}

function sentLine(sentTo: Record<string, number>): string {
  const hosts = Object.entries(sentTo).sort(([a], [b]) => a.localeCompare(b))
  const total = hosts.reduce((n, [, c]) => n + c, 0)
  return `${total} compiles sent to other hosts${hosts.length ? ` (${hosts.map(([h, c]) => `${h}: ${c}`).join(', ')})` : ''}, the rest of the ccache misses compiled here`
}
