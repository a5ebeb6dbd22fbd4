import {Recipe} from '../../src/recipe/schema.js'
import {projectDirs, RecipeStore, type LoadedRecipe} from '../../src/recipe/load.js'
import {canonicalJson, sha256} from '../../src/util/fsx.js'
import {repoRoot} from './paths.js'

/**
 * What issue #4 recommends for recipes/_debian.yaml beyond what it has today (see the report):
 * systemd-resolved (DNS from networkd's DHCP lease), sudo (cloud-init's default user), fdisk
 * (sfdisk, which growpart needs on GPT).
 */
export const DEBIAN_CLOUD_PACKAGES = [
  'systemd', 'systemd-sysv', 'systemd-resolved', 'udev', 'dbus', 'cloud-init', 'openssh-server', 'cloud-guest-utils', 'fdisk',
  'kexec-tools', 'iproute2', 'ca-certificates', 'netbase', 'procps', 'e2fsprogs', 'sudo',
]

/** The distro's kernels, modules, initrds and their root symlinks; and ssh host keys, which no two instances may share. */
export const DEBIAN_IMAGE_REMOVE = [
  'boot/vmlinuz-*', 'boot/initrd.img-*', 'boot/System.map-*', 'boot/config-*', 'vmlinuz', 'vmlinuz.old', 'initrd.img', 'initrd.img.old',
  'lib/modules/*', 'usr/lib/modules/*', 'etc/ssh/ssh_host_*',
]

/**
 * recipes/debian-12.yaml as the repository has it, with base.packages and image.remove as
 * recommended above, then `change` applied (tests replace the base, for example). `change` edits the
 * raw recipe object, untyped as the YAML is; Recipe.parse checks what it made.
 */
export function debian12Recipe(change: (r: Record<string, any>) => void = () => {}): LoadedRecipe {
  const loaded = new RecipeStore(projectDirs(repoRoot)).load('debian-12')
  const raw = JSON.parse(JSON.stringify(loaded.recipe)) as Record<string, any>
  raw.base.packages = DEBIAN_CLOUD_PACKAGES
  raw.image.remove = DEBIAN_IMAGE_REMOVE
  change(raw)
  const recipe = Recipe.parse(raw)
  return {recipe, files: loaded.files, digest: sha256(canonicalJson(recipe))}
}
