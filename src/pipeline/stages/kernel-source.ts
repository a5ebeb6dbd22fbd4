import {distroFor} from '../../distro/index.js'
import {fetchKernelSource} from '../../kernel/source.js'
import {linkCopy} from '../../kernel/tree.js'
import {formatVersion, treeVersion} from '../../kernel/version.js'
import type {KernelSourceSpec} from '../../recipe/schema.js'
import type {StageOf} from '../stage.js'

/** The kernel source the recipe names, unpacked: out/tree. */
/** The source spec, and the distro family whose module fetches it. */
export interface KernelSourceInputs {
  source: KernelSourceSpec
  family: string
}

export const kernelSourceStage: StageOf<'kernel-source', KernelSourceInputs, never> = {
  name: 'kernel-source',
  title: 'kernel source',
  code: import.meta.url,
  needs: [],
  inputs: (ctx) => ({source: ctx.recipe.recipe.kernel.source, family: ctx.recipe.recipe.distro.family}),
  async run(io, inputs) {
    const fetched = await fetchKernelSource(inputs.source, {
      cacheDir: io.env.cacheDir,
      // not an input: the recipe's sha256 names its content
      localFile: io.env.kernelSourceFile,
      work: io.work,
      logFile: io.logFile,
      signal: io.signal,
      progress: io.progress,
    }, distroFor(inputs.family))
    const tree = `${io.out}/tree`
    await linkCopy(fetched.tree, tree)
    const version = formatVersion(await treeVersion(tree))
    io.log(`kernel source ${version} (${fetched.kind}, ${fetched.digest})${fetched.package ? ` from ${fetched.package}` : ''}`)
    return {kind: fetched.kind, version, digest: fetched.digest, ...(fetched.package ? {package: fetched.package} : {})}
  },
}
