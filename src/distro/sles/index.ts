import {BugError} from '../../errors.js'
import type {DistroModule} from '../family.js'
import {ZYPP_LOCKS, zyppLocksWith} from './zypp-locks.js'

/**
 * SUSE Linux Enterprise and openSUSE: the distro's guest image as the base (a disk image, read
 * without root), the kernel as a full tree (tarball, archive or git), and zypper's package locks
 * keeping the distro's kernel packages out.
 *
 * Not here yet: SUSE's kernel source RPMs hold a patch queue (series.conf and patch tarballs over a
 * vanilla tarball) rather than a tree, and their configs sit in config.tar.bz2; reading them is
 * the next step for this module.
 */
export const slesModule: DistroModule = {
  name: 'sles',
  families: ['sles'],
  rootfsKinds: [],
  sourceKinds: [],
  distroConfigFrom: {},
  holdMethods: ['zypper-lock', 'none'],
  holdExample: ['kernel-default'],
  guestManifests: [],
  sourceProblem(spec) {
    if (spec.kind === 'git' && /\/kernel-source(\.git)?\/?$/.test(spec.url)) {
      return `${spec.url} is SUSE's kernel-source repository: a patch queue (series.conf over a vanilla tarball), not a kernel tree, and the sles module does not expand it yet (give the expanded tree: a tarball, an archive with --kernel-source-file, or a git tree)`
    }
    return undefined
  },
  tools: [{tool: 'zypper', package: 'zypper', stages: ['tests'], why: "read a built disk's package locks back with zypper itself"}],
  async kernelHold(hold, ctx) {
    if (hold.method === 'none') return []
    if (hold.method !== 'zypper-lock') throw new BugError(`the sles module holds kernels with zypper-lock, not ${hold.method}`)
    // a root without locks (zypper keeps none until the first addlock) gets the file
    const base = await ctx.baseFile(ZYPP_LOCKS)
    return [{kind: 'file', name: ZYPP_LOCKS, mode: 0o644, content: Buffer.from(zyppLocksWith(base?.toString('utf8'), hold.packages))}]
  },
}
