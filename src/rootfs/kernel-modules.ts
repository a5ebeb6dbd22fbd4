import {lstat, readdir, readlink} from 'node:fs/promises'
import {join} from 'node:path'

import {StageError} from '../errors.js'
import type {Addition} from './transform.js'

/** Links `make modules_install` leaves to the build machine's tree: meaningless in the image. */
const BUILD_TREE_LINKS = new Set(['build', 'source'])

/**
 * The compile stage's module staging tree (out/modules: lib/modules/<release>/...) as additions
 * at the same names, owned by root; the transform places them through the base's lib -> usr/lib.
 */
export async function kernelModuleAdditions(modulesDir: string): Promise<Addition[]> {
  const out: Addition[] = []
  async function walk(dir: string, name: string): Promise<void> {
    for (const entry of (await readdir(dir)).sort()) {
      const path = join(dir, entry)
      const child = name ? `${name}/${entry}` : entry
      const st = await lstat(path)
      if (st.isSymbolicLink()) {
        if (BUILD_TREE_LINKS.has(entry) && /^lib\/modules\/[^/]+$/.test(name)) continue
        out.push({kind: 'symlink', name: child, target: await readlink(path)})
      } else if (st.isDirectory()) {
        out.push({kind: 'directory', name: child, mode: st.mode & 0o755})
        await walk(path, child)
      } else if (st.isFile()) {
        out.push({kind: 'host-file', name: child, mode: st.mode & 0o755, size: st.size, source: path})
      } else {
        throw new StageError(`kernel module tree ${modulesDir} holds ${child}, which is neither a file, a directory nor a symlink`)
      }
    }
  }
  try {
    await walk(modulesDir, '')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new StageError(`the compile stage left no module tree at ${modulesDir}`, {hint: 'rebuild the kernel: `cvm-image build <recipe> --force compile`', cause: e})
    }
    throw e
  }
  return out
}
