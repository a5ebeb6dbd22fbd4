import {z} from 'zod'

/** Field types the recipe schema and the distro families' parts of it (src/distro/schemas.ts) share. */
export const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be a sha256: 64 lowercase hex digits')
/** null means: upstream publishes no checksum we could confirm; a build needs --base-sha256 or a local file */
export const pinnedSha256 = sha256.nullable()
export const url = z.string().regex(/^(https?|ftp|git|ssh|file):\/\/\S+$/, 'must be a URL (https://, http://, git://, file://)')
