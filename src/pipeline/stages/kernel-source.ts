import {fetchKernelSource} from '../../kernel/source.js'
import {linkCopy} from '../../kernel/tree.js'
import {formatVersion, treeVersion} from '../../kernel/version.js'
import type {Json} from '../../util/fsx.js'
import type {Stage} from '../stage.js'

/** The kernel source the recipe names, unpacked: out/tree. */
export const kernelSourceStage: Stage = {
  name: 'kernel-source',
  title: 'kernel source',
  version: 1,
  needs: [],
  inputs: (ctx) => ({source: ctx.recipe.recipe.kernel.source as unknown as Json}),
  async run(ctx, io) {
    const fetched = await fetchKernelSource(ctx.recipe.recipe.kernel.source, {
      cacheDir: ctx.cacheDir,
      // not an input: the recipe's sha256 names its content
      localFile: ctx.options.kernelSourceFile,
      work: io.work,
      logFile: io.logFile,
      signal: io.signal,
      progress: io.progress,
    })
    const tree = `${io.out}/tree`
    await linkCopy(fetched.tree, tree)
    const version = formatVersion(await treeVersion(tree))
    io.log(`kernel source ${version} (${fetched.kind}, ${fetched.digest})${fetched.package ? ` from ${fetched.package}` : ''}`)
    return {kind: fetched.kind, version, digest: fetched.digest, ...(fetched.package ? {package: fetched.package} : {})}
  },
}
