import {mkdirSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

/** The repository root. */
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

/**
 * A cache shared by the heavy tests (kernel build, rootfs, disk, boot), so that one CI run builds
 * each artifact once. CVM_TEST_CACHE overrides it.
 */
export function sharedTestCache(): string {
  const dir = process.env.CVM_TEST_CACHE ?? '/var/tmp/cvm-image-test-cache'
  mkdirSync(dir, {recursive: true})
  return dir
}

/**
 * The archive of old distro kernel trees (linux-4.18.0-147.5.1.el8/, ...): ../shared/kernels/ beside
 * the clone, as CI has it; CVM_TEST_OLD_KERNELS overrides it (a worktree elsewhere).
 */
export function oldKernelsArchive(): string {
  return process.env.CVM_TEST_OLD_KERNELS ?? join(repoRoot, '..', 'shared', 'kernels', 'old-kernels.tar.zst')
}
