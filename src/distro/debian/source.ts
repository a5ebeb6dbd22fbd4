import {existsSync} from 'node:fs'
import {readdir, rm} from 'node:fs/promises'
import {join} from 'node:path'

import {InputError} from '../../errors.js'
import type {FetchedSource, SourceIO} from '../../kernel/source-io.js'
import {cachedTree, untar} from '../../kernel/tree-cache.js'
import type {KernelSourceSpec} from '../../recipe/schema.js'
import {run} from '../../util/exec.js'
import {sha256File} from '../../util/fsx.js'
import {PrivateApt} from './apt.js'

type DebianPackageSource = Extract<KernelSourceSpec, {kind: 'debian-package'}>

/** linux-source-<v> from a Debian suite: fetched with a private apt (checked against the signed index), its tarball unpacked once per .deb. */
export async function fromDebianPackage(spec: DebianPackageSource, io: SourceIO): Promise<FetchedSource> {
  const apt = new PrivateApt(io.cacheDir, spec.mirror, spec.suite)
  io.progress(`reading the ${spec.suite} index`)
  await apt.update(io.logFile, io.signal)
  const pkg = await apt.show(spec.package, spec.version)
  const debDir = join(io.cacheDir, 'downloads', 'debian')
  const deb = join(debDir, pkg.filename.split('/').at(-1)!)
  if (!existsSync(deb) || (await sha256File(deb)) !== pkg.sha256) {
    io.progress(`downloading ${pkg.name} ${pkg.version}`)
    await apt.download(pkg, debDir, io.logFile, io.signal)
  }
  const digest = await sha256File(deb)
  if (digest !== pkg.sha256) throw new InputError(`${deb}: sha256 ${digest} differs from the signed index (${pkg.sha256})`, {hint: `remove ${deb} and build again`})
  const tree = await cachedTree(io, digest, async (dest) => {
    const x = join(io.work, 'deb')
    await run('dpkg-deb', ['-x', deb, x], {what: `unpack ${deb}`, logFile: io.logFile})
    const src = join(x, 'usr', 'src')
    const tarball = (await readdir(src)).find((f) => /^linux-source-.*\.tar\.(xz|gz|bz2|zst)$/.test(f))
    if (!tarball) throw new InputError(`${pkg.name} ${pkg.version} holds no usr/src/linux-source-*.tar.*`, {hint: 'name a linux-source-<version> package in recipe.kernel.source.package'})
    await untar(join(src, tarball), dest, io)
    await rm(x, {recursive: true, force: true})
  })
  return {kind: 'debian-package', tree, digest, package: `${pkg.name} ${pkg.version}`}
}
