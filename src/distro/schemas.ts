import {MmdebstrapBase, DebianPackageSource} from './debian/schema.js'
import {SrpmSource} from './rpm-schema.js'

/**
 * The distro families' parts of the recipe schema: the bases their modules build and the kernel
 * sources they fetch, each defined in its family's folder. The recipe schema (src/recipe/schema.ts)
 * puts them together with the kinds every family reads (an image base, a tarball, git or archive
 * source); a new family adds its parts here, and touches no shared schema file.
 */
export const FAMILY_BASES = [MmdebstrapBase] as const
export const FAMILY_SOURCES = [DebianPackageSource, SrpmSource] as const
