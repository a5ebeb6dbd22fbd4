import {z} from 'zod'

import {pinnedSha256, url} from '../recipe/fields.js'

/** The RPM families' part of the recipe schema (RHEL and SUSE read source RPMs alike: src/distro/rpm.ts). */

/**
 * A distribution's kernel source RPM. RHEL family (kernel-<version>-<release>.src.rpm): the tree is
 * its one linux-*.tar.* and, for config base distro, the config is one of its kernel-*.config.
 * SUSE (kernel-source-<version>.src.rpm): the tree is its vanilla linux-*.tar.xz with series.conf's
 * patches applied, and the config is config/<arch>/<flavour> of its config.tar.bz2.
 */
export const SrpmSource = z.strictObject({
  kind: z.literal('srpm'),
  /** the .src.rpm; --kernel-source-file gives a local copy instead */
  url,
  /** of the .src.rpm; null: a build refuses until it is pinned */
  sha256: pinnedSha256,
  /**
   * the config inside to use for base distro. RHEL: a file name, default the non-debug x86_64 one
   * (kernel-x86_64.config, kernel-x86_64-rhel.config or kernel-<version>-x86_64.config). SUSE:
   * <arch>/<flavour> in config.tar.bz2, default x86_64/default.
   */
  config: z
    .string()
    .regex(/^([A-Za-z0-9._+-]+\.config|[a-z0-9_]+\/[A-Za-z0-9_+-]+)$/, 'must name a config inside the source RPM: a file name such as kernel-x86_64.config (RHEL) or <arch>/<flavour> such as x86_64/default (SUSE)')
    .optional(),
})

