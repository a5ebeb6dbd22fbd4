import {distroOf} from '../../distro/index.js'
import {fetchKernelSource} from '../../kernel/source.js'
import {linkCopy} from '../../kernel/tree.js'
import {formatVersion, treeVersion} from '../../kernel/version.js'
import type {KernelSourceSpec} from '../../recipe/schema.js'
import type {StageOf} from '../stage.js'

/** The kernel source the recipe names, unpacked: out/tree. */
export const kernelSourceStage: StageOf<'kernel-source', {source: KernelSourceSpec}, never> = {
  name: 'kernel-source',
  title: 'kernel source',
  code: import.meta.url,
  needs: [],
  inputs: (ctx) => ({source: ctx.recipe.recipe.kernel.source}),
  async run(ctx, io, inputs) {
    const fetched = await fetchKernelSource(inputs.source, {
      cacheDir: ctx.cacheDir,
      // not an input: the recipe's sha256 names its content
      localFile: ctx.options.kernelSourceFile,
      work: io.work,
      logFile: io.logFile,
      signal: io.signal,
      progress: io.progress,
    }, distroOf(ctx.recipe.recipe))
    const tree = `${io.out}/tree`
    await linkCopy(fetched.tree, tree)
    const version = formatVersion(await treeVersion(tree))
    io.log(`kernel source ${version} (${fetched.kind}, ${fetched.digest})${fetched.package ? ` from ${fetched.package}` : ''}`)
    return {kind: fetched.kind, version, digest: fetched.digest, ...(fetched.package ? {package: fetched.package} : {})}
  },
}
