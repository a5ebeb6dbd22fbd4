import {existsSync} from 'node:fs'
import {mkdir, readdir, rename, rm, writeFile, cp} from 'node:fs/promises'
import {join} from 'node:path'

import {run} from '../../src/util/exec.js'
import {sha256File} from '../../src/util/fsx.js'
import type {CompileResult} from '../../src/pipeline/results.js'
import type {StageResult} from '../../src/pipeline/stage.js'

/**
 * A real kernel in the compile stage's output shape (vmlinuz, modules/lib/modules/<release>/,
 * kernel.json), taken from Debian's linux-image-*-cloud-amd64 package on deb.debian.org.
 * Assemble only packs a kernel, it does not build one; this keeps its tests off the 4-minute compile.
 * A subset of modules (fs/ and crypto/) keeps the tree small but real.
 */
export async function debianCloudKernel(cacheDir: string): Promise<StageResult<'compile'>> {
  const dir = join(cacheDir, 'debian-cloud-kernel')
  const metaFile = join(dir, 'kernel.json')
  if (existsSync(metaFile)) return {stage: 'compile', key: 'debian-cloud-kernel', dir, meta: JSON.parse(await import('node:fs/promises').then((m) => m.readFile(metaFile, 'utf8')))}
  const tmp = `${dir}.tmp-${process.pid}`
  await rm(tmp, {recursive: true, force: true})
  await mkdir(tmp, {recursive: true})
  const dep = await run('apt-cache', ['depends', '--no-recommends', 'linux-image-cloud-amd64'])
  const pkg = /Depends: (linux-image-[^\s]+-cloud-amd64)/.exec(dep.stdout)?.[1]
  if (!pkg) throw new Error(`apt-cache found no linux-image-*-cloud-amd64: ${dep.stdout}`)
  await run('apt-get', ['download', pkg], {cwd: tmp})
  const deb = (await readdir(tmp)).find((f) => f.endsWith('.deb'))!
  const x = join(tmp, 'x')
  await run('dpkg-deb', ['-x', join(tmp, deb), x])
  const release = (await readdir(join(x, 'lib/modules')))[0]
  await run('cp', [join(x, 'boot', `vmlinuz-${release}`), join(tmp, 'vmlinuz')])
  const mods = join(tmp, 'modules/lib/modules', release)
  await mkdir(join(mods, 'kernel'), {recursive: true})
  for (const sub of ['fs', 'crypto']) await cp(join(x, 'lib/modules', release, 'kernel', sub), join(mods, 'kernel', sub), {recursive: true})
  for (const f of ['modules.order', 'modules.builtin', 'modules.builtin.modinfo']) await cp(join(x, 'lib/modules', release, f), join(mods, f))
  // the package's own .config (boot/config-<release>), where a compile stage records its configure stage's
  const configDigest = await sha256File(join(x, 'boot', `config-${release}`))
  await rm(x, {recursive: true, force: true})
  await rm(join(tmp, deb))
  const meta: CompileResult = {release, version: release.split('-')[0], sourceDigest: `debian:${pkg}`, patches: [], configDigest, vmlinuzSha256: await sha256File(join(tmp, 'vmlinuz'))}
  await writeFile(join(tmp, 'kernel.json'), JSON.stringify(meta, null, 2))
  await run('chmod', ['-R', 'a+rX', tmp])
  await rename(tmp, dir)
  return {stage: 'compile', key: 'debian-cloud-kernel', dir, meta}
}
