import {BugError} from '../../errors.js'
import type {DistroModule} from '../family.js'
import {srpmSourceHooks} from '../rpm.js'
import {fromSuseSrpm, suseDistroConfig} from './srpm.js'
import {ZYPP_LOCKS, zyppLocksWith} from './zypp-locks.js'

/**
 * SUSE Linux Enterprise and openSUSE: the distro's guest image as the base (a disk image, read
 * without root), the kernel from the distro's kernel-source RPM (its patch queue applied to its
 * vanilla tarball) with its config from the same RPM's config.tar.bz2, and zypper's package locks
 * keeping the distro's kernel packages out.
 */
export const slesModule: DistroModule = {
  name: 'sles',
  families: ['sles'],
  rootfsKinds: [],
  sourceKinds: ['srpm'],
  distroConfigFrom: {srpm: "the source RPM's config.tar.bz2, config/x86_64/default (or the recipe's source.config, <arch>/<flavour>)"},
  holdMethods: ['zypper-lock', 'none'],
  holdExample: ['kernel-default'],
  guestManifests: [],
  sourceProblem(spec) {
    if (spec.kind === 'git' && /\/kernel-source(\.git)?\/?$/.test(spec.url)) {
      return `${spec.url} is SUSE's kernel-source repository: a patch queue (series.conf over a vanilla tarball), not a kernel tree, and its vanilla tarball is not in it: give the kernel-source .src.rpm (kind srpm), which holds both, or the expanded tree (a tarball, an archive with --kernel-source-file, or a git tree)`
    }
    if (spec.kind === 'srpm' && spec.config && !/^[^/]+\/[^/]+$/.test(spec.config)) {
      return `a SUSE source RPM keeps its configs as config/<arch>/<flavour> in config.tar.bz2: recipe.kernel.source.config must be <arch>/<flavour> such as x86_64/default, not ${spec.config}`
    }
    return undefined
  },
  ...srpmSourceHooks('sles', {tree: fromSuseSrpm, config: suseDistroConfig}),
  tools: [
    {tool: 'patch', package: 'patch', stages: ['kernel-source'], why: "apply the series.conf of SUSE's kernel source RPM to its vanilla tarball"},
    {tool: 'bzip2', package: 'bzip2', stages: ['kernel-source', 'configure'], why: "unpack the patches.*.tar.bz2 and config.tar.bz2 of SUSE's kernel source RPM"},
    {tool: 'zypper', package: 'zypper', stages: ['tests'], why: "read a built disk's package locks back with zypper itself"},
  ],
  async kernelHold(hold, ctx) {
    if (hold.method === 'none') return []
    if (hold.method !== 'zypper-lock') throw new BugError(`the sles module holds kernels with zypper-lock, not ${hold.method}`)
    // a root without locks (zypper keeps none until the first addlock) gets the file
    const base = await ctx.baseFile(ZYPP_LOCKS)
    return [{kind: 'file', name: ZYPP_LOCKS, mode: 0o644, content: Buffer.from(zyppLocksWith(base?.toString('utf8'), hold.packages))}]
  },
}
