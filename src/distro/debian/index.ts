import {readFileSync} from 'node:fs'

import {BugError, InputError} from '../../errors.js'
import {renderGuestTemplate} from '../../rootfs/guest-files.js'
import {sha256} from '../../util/fsx.js'
import type {DistroModule} from '../family.js'
import {debianDistroConfig} from './config.js'
import {mmdebstrapRootfs, REPRODUCIBLE_HOOK} from './mmdebstrap.js'
import {fromDebianPackage} from './source.js'

/** The apt preferences file that pins the distro's kernel packages away. */
export const APT_HOLD_FILE = 'etc/apt/preferences.d/cvm-image-kernel'

/**
 * Debian and Ubuntu: a root from Debian's mirror with mmdebstrap (or the distro's rootfs tarball),
 * the kernel from linux-source-<v> with its config from linux-config-<v>, and apt pinned away from
 * the distro's kernel packages.
 */
export const debianModule: DistroModule = {
  name: 'debian',
  families: ['debian', 'ubuntu'],
  rootfsKinds: ['mmdebstrap'],
  sourceKinds: ['debian-package'],
  distroConfigFrom: {'debian-package': 'linux-config-<line> of the same suite, cloud-amd64 flavour'},
  holdMethods: ['apt-preferences', 'none'],
  holdExample: ['linux-image-*', 'linux-headers-*'],
  guestManifests: ['debian.yaml'],
  tools: [
    {tool: 'mmdebstrap', package: 'mmdebstrap', stages: ['base'], why: 'build a Debian rootfs tarball'},
    {tool: 'apt-get', package: 'apt', stages: ['base', 'kernel-source'], why: 'fetch Debian packages'},
    {tool: 'dpkg-deb', package: 'dpkg', stages: ['kernel-source', 'configure'], why: 'unpack linux-source and linux-config packages'},
    {tool: 'newuidmap', package: 'uidmap', stages: ['base', 'tests'], why: 'mmdebstrap without root (unshare mode)'},
  ],
  async buildRootfs(base, output, io) {
    if (base.kind !== 'mmdebstrap') throw new BugError(`the debian module builds mmdebstrap bases, not ${base.kind}`)
    io.onLine?.(`mmdebstrap ${base.suite} (${base.variant}, ${base.packages.length} extra packages)`)
    await mmdebstrapRootfs(base, output, io)
    return `mmdebstrap ${base.variant} ${base.suite} ${base.mirror}`
  },
  rootfsInputs(base, sourceDateEpoch) {
    if (base.kind !== 'mmdebstrap') throw new BugError(`the debian module builds mmdebstrap bases, not ${base.kind}`)
    const {suite, mirror, variant, components, packages} = base
    return {suite, mirror, variant, components, packages, sourceDateEpoch, customizeHook: sha256(readFileSync(REPRODUCIBLE_HOOK))}
  },
  async fetchSource(spec, io) {
    if (spec.kind !== 'debian-package') throw new BugError(`the debian module fetches debian-package sources, not ${spec.kind}`)
    return fromDebianPackage(spec, io)
  },
  async distroConfig(spec, io, dest) {
    if (spec.kind !== 'debian-package') throw new BugError(`the debian module has configs for debian-package sources, not ${spec.kind}`)
    return debianDistroConfig(spec, io, dest)
  },
  async kernelHold(hold, ctx) {
    if (hold.method === 'none') return []
    if (hold.packages.length === 0) throw new InputError('recipe.image.kernel_hold has method apt-preferences but no packages', {hint: 'list the kernel packages to pin away, e.g. packages: ["linux-image-*"]'})
    const content = renderGuestTemplate(ctx.templatesDir, 'apt-kernel-hold.hbs', {kernelRelease: ctx.kernelRelease, packages: hold.packages})
    return [{kind: 'file', name: APT_HOLD_FILE, mode: 0o644, content: Buffer.from(content)}]
  },
}
