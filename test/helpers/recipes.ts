import {Recipe} from '../../src/recipe/schema.js'
import type {LoadedRecipe} from '../../src/recipe/load.js'
import {canonicalJson, sha256} from '../../src/util/fsx.js'

/** The packages a Debian cloud image has, for mmdebstrap (see the report of issue #4). */
export const DEBIAN_CLOUD_PACKAGES = [
  'systemd', 'systemd-sysv', 'systemd-resolved', 'udev', 'dbus', 'cloud-init', 'openssh-server', 'kexec-tools',
  'cloud-guest-utils', 'fdisk', 'iproute2', 'ca-certificates', 'netbase', 'sudo', 'procps', 'isc-dhcp-client', 'less',
]

/** What the image's root must not keep from the base: distro kernels, their modules and initrds, host keys. */
export const DEBIAN_IMAGE_REMOVE = [
  'boot/vmlinuz*', 'boot/initrd.img*', 'boot/System.map*', 'boot/config-*', 'vmlinuz', 'vmlinuz.old', 'initrd.img', 'initrd.img.old',
  'usr/lib/modules/*', 'lib/modules/*', 'etc/ssh/ssh_host_*',
]

/** A debian-12 recipe as the lead's recipes/debian-12.yaml should resolve (tests do not depend on that file). */
export function debian12Recipe(overrides: Record<string, unknown> = {}): LoadedRecipe {
  const recipe = Recipe.parse({
    id: 'debian-12',
    name: 'Debian 12 (bookworm) CVM',
    status: 'buildable-here',
    distro: {family: 'debian', release: '12', kernel: '6.1'},
    source_date_epoch: 1747440000,
    base: {kind: 'mmdebstrap', suite: 'bookworm', mirror: 'http://deb.debian.org/debian', variant: 'minbase', components: ['main'], packages: DEBIAN_CLOUD_PACKAGES},
    kernel: {line: '6.1', upstream_version: '6.1', source: {kind: 'debian-package', package: 'linux-source-6.1', suite: 'bookworm', mirror: 'http://deb.debian.org/debian'}, config: {base: 'lean', features: ['sev']}, sev_es: 'in 6.1'},
    boot: {cmdline: 'console=ttyS0 console=tty0'},
    image: {
      size_gib: 2,
      hostname: 'cvm',
      remove: DEBIAN_IMAGE_REMOVE,
      kernel_hold: {method: 'apt-preferences', packages: ['linux-image-*'], note: 'the CVM kernel boots from the UKI; a distro kernel must not be installed beside it'},
      allow_absolute_symlinks: true,
    },
    ...overrides,
  })
  return {recipe, files: [], digest: sha256(canonicalJson(recipe))}
}
