import {z} from 'zod'

import {url} from '../../recipe/fields.js'

/** The Debian family's parts of the recipe schema: a base mmdebstrap builds and a kernel source package. */

export const MmdebstrapBase = z.strictObject({
  kind: z.literal('mmdebstrap'),
  suite: z.string().min(1),
  mirror: url,
  variant: z.enum(['extract', 'custom', 'essential', 'apt', 'required', 'minbase', 'buildd', 'important', 'standard']).default('minbase'),
  components: z.array(z.string().min(1)).default(['main']),
  /** packages a cloud image has (systemd, cloud-init, openssh-server, ...) */
  packages: z.array(z.string().min(1)).default([]),
})

export const DebianPackageSource = z.strictObject({
  kind: z.literal('debian-package'),
  /** e.g. linux-source-6.1: fetched with apt into the cache, never installed on the host */
  package: z.string().min(1),
  suite: z.string().min(1),
  mirror: url,
  /** the package version; unset means the suite's current one */
  version: z.string().optional(),
})

