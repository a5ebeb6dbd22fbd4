import {BugError, InputError} from '../../errors.js'
import type {DistroModule} from '../family.js'
import {DNF_CONF, DNF_PYTHON, dnfConfWithExclude} from './dnf-conf.js'
import {srpmSourceHooks} from '../rpm.js'
import {fromSrpm, srpmDistroConfig} from './srpm.js'

/**
 * RHEL, CentOS and their rebuilds: the distro's KVM guest image as the base (a disk image, read
 * without root), the kernel from the distro's source RPM with its config from the same RPM, and
 * dnf's [main] exclude list keeping the distro's kernel packages out.
 */
export const rhelModule: DistroModule = {
  name: 'rhel',
  families: ['rhel'],
  rootfsKinds: [],
  sourceKinds: ['srpm'],
  distroConfigFrom: {srpm: "the source RPM's kernel-x86_64.config (or the recipe's source.config)"},
  holdMethods: ['dnf-exclude', 'none'],
  holdExample: ['kernel', 'kernel-core', 'kernel-modules'],
  // NetworkManager, the locale and the rest come with the distro's own guest image
  guestManifests: [],
  sourceProblem(spec) {
    if (spec.kind === 'git' && /\/rpms\/kernel(\.git)?\/?$/.test(spec.url)) {
      return `${spec.url} is a dist-git repository: the kernel's spec file and the names of its tarballs in the lookaside cache, not a kernel tree (give the kernel's source RPM or the tree itself)`
    }
    if (spec.kind === 'srpm' && spec.config && !spec.config.endsWith('.config')) {
      return `a RHEL-family source RPM holds its configs as kernel-*.config files: recipe.kernel.source.config must be one such as kernel-x86_64.config, not ${spec.config}`
    }
    return undefined
  },
  ...srpmSourceHooks('rhel', {tree: fromSrpm, config: srpmDistroConfig}),
  tools: [{tool: DNF_PYTHON, package: 'python3-dnf', stages: ['tests'], why: "read a built disk's dnf.conf back with dnf's own parser"}],
  async kernelHold(hold, ctx) {
    if (hold.method === 'none') return []
    if (hold.method !== 'dnf-exclude') throw new BugError(`the rhel module holds kernels with dnf-exclude, not ${hold.method}`)
    const base = await ctx.baseFile(DNF_CONF)
    if (base === undefined) {
      throw new InputError(`the base rootfs has no ${DNF_CONF}, so recipe.image.kernel_hold (dnf-exclude) has nothing to keep dnf from`, {
        hint: 'a RHEL-family base has dnf; check recipe.base, or set recipe.image.kernel_hold.method: none for a root without dnf',
      })
    }
    return [{kind: 'file', name: DNF_CONF, mode: 0o644, content: Buffer.from(dnfConfWithExclude(base.toString('utf8'), hold.packages))}]
  },
}
