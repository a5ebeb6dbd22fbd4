import {BugError} from '../errors.js'
import type {Recipe} from '../recipe/schema.js'
import {debianModule} from './debian/index.js'
import type {CapabilityProblem, DistroModule, FamilyName} from './family.js'
import {rhelModule} from './rhel/index.js'
import {slesModule} from './sles/index.js'

export type {CapabilityProblem, DistroModule, FamilyName} from './family.js'

/** Every distro module; a recipe's distro.family picks one. */
export const DISTRO_MODULES: readonly DistroModule[] = [debianModule, rhelModule, slesModule]

/** Source kinds every family reads: a full tree from a tarball, a local archive or git. */
const COMMON_SOURCE_KINDS = ['tarball', 'archive', 'git']

export function moduleFor(family: FamilyName): DistroModule | undefined {
  return DISTRO_MODULES.find((m) => m.families.includes(family))
}

/** The module of a recipe the recipe check has accepted. */
export function distroOf(recipe: Recipe): DistroModule {
  return distroFor(recipe.distro.family)
}

/** The module of a distro family (a stage's run() has the family from its inputs, not the recipe). */
export function distroFor(family: FamilyName): DistroModule {
  const m = moduleFor(family)
  if (!m) throw new BugError(`no distro module for family ${family}, which the recipe check refuses`)
  return m
}

/**
 * What a recipe asks that its family's module cannot do, each at the field that asks it: the
 * recipe loader reports these as problems, so `plan`, `build` and `recipes` refuse the recipe when
 * it loads instead of failing in the middle of a build.
 */
export function capabilityProblems(recipe: Recipe): CapabilityProblem[] {
  const m = moduleFor(recipe.distro.family)
  if (!m) {
    const known = DISTRO_MODULES.flatMap((x) => x.families).join(', ')
    return [{path: ['distro', 'family'], message: `cvm-image has no module for the distro family "${recipe.distro.family}" (src/distro/ has ${known}), so nothing knows its base, its kernel source or its guest files (use one of ${known}, or add a module)`}]
  }
  const out: CapabilityProblem[] = []
  const {base, kernel, image} = recipe
  if (base.kind !== 'image' && !m.rootfsKinds.includes(base.kind)) {
    out.push({path: ['base', 'kind'], message: `the ${m.name} module cannot build a "${base.kind}" base (it builds ${[...m.rootfsKinds, 'image'].join(', ')})`})
  }
  const sourceKinds = [...COMMON_SOURCE_KINDS, ...m.sourceKinds]
  if (!sourceKinds.includes(kernel.source.kind)) {
    out.push({path: ['kernel', 'source', 'kind'], message: `the ${m.name} module cannot fetch a "${kernel.source.kind}" kernel source (it takes ${sourceKinds.join(', ')})`})
  } else {
    const why = m.sourceProblem?.(kernel.source)
    if (why) out.push({path: ['kernel', 'source'], message: why})
  }
  if (kernel.config.base === 'distro' && !m.distroConfigFrom[kernel.source.kind]) {
    const from = Object.entries(m.distroConfigFrom).map(([k, where]) => `${k} (${where})`)
    out.push({path: ['kernel', 'config', 'base'], message: `config base "distro" needs ${m.name}'s own kernel config, and a ${kernel.source.kind} source has none here (${from.length ? `it comes with ${from.join('; ')}` : `the ${m.name} module reads no distro config yet`}; or use lean or defconfig)`})
  }
  const hold = image.kernel_hold
  if (!m.holdMethods.includes(hold.method)) {
    out.push({path: ['image', 'kernel_hold', 'method'], message: `the ${m.name} module holds the kernel with ${m.holdMethods.join(' or ')}, not "${hold.method}"`})
  } else if (hold.method !== 'none' && hold.packages.length === 0) {
    out.push({path: ['image', 'kernel_hold', 'packages'], message: `kernel_hold method ${hold.method} needs the kernel packages to hold (list them, e.g. [${m.holdExample.join(', ')}])`})
  }
  return out
}
