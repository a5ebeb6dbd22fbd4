import {existsSync} from 'node:fs'
import {readdir} from 'node:fs/promises'
import {join} from 'node:path'

import {InputError} from '../errors.js'
import type {KernelSourceSpec} from '../recipe/schema.js'
import {run} from '../util/exec.js'
import {atomicWriteFile, sha256File} from '../util/fsx.js'
import {PrivateApt} from './apt.js'
import {srpmDistroConfig} from './srpm.js'

/** Debian's flavours, best first: the cloud kernel is what a Debian cloud image ships. */
const DEBIAN_FLAVOURS = ['config.amd64_none_cloud-amd64.xz', 'config.amd64_none_amd64.xz']

/**
 * The distribution's own kernel config for a source, written to dest: for a Debian source package
 * linux-source-<line>, the cloud-amd64 config from linux-config-<line> of the same suite; for a
 * source RPM, its non-debug x86_64 config (localFile: the --kernel-source-file copy of it).
 */
export async function fetchDistroConfig(source: KernelSourceSpec, cacheDir: string, work: string, dest: string, logFile?: string, localFile?: string): Promise<string> {
  if (source.kind === 'srpm') return srpmDistroConfig(source, {cacheDir, work, logFile, localFile, progress: () => {}}, dest)
  if (source.kind !== 'debian-package') {
    throw new InputError(`config base "distro" needs a distribution's config, and a ${source.kind} source has none`, {
      hint: 'use kernel.config.base lean or defconfig, or a debian-package or srpm source (a linux-config package or the source RPM has the configs)',
    })
  }
  const name = source.package.replace(/^linux-source-/, 'linux-config-')
  const apt = new PrivateApt(cacheDir, source.mirror, source.suite)
  await apt.update(logFile)
  const pkg = await apt.show(name, source.version)
  const dir = join(cacheDir, 'downloads', 'debian')
  const deb = join(dir, pkg.filename.split('/').at(-1)!)
  if (!existsSync(deb) || (await sha256File(deb)) !== pkg.sha256) await apt.download(pkg, dir, logFile)
  const x = join(work, 'linux-config')
  await run('dpkg-deb', ['-x', deb, x], {what: `unpack ${deb}`})
  const src = join(x, 'usr', 'src', name)
  const files = existsSync(src) ? await readdir(src) : []
  const flavour = DEBIAN_FLAVOURS.find((f) => files.includes(f))
  if (!flavour) throw new InputError(`${name} ${pkg.version} has no amd64 config (looked for ${DEBIAN_FLAVOURS.join(', ')})`, {hint: 'use kernel.config.base lean or defconfig'})
  const text = (await run('xz', ['-dc', join(src, flavour)], {what: `unpack ${flavour}`})).stdout
  await atomicWriteFile(dest, text.endsWith('\n') ? text : `${text}\n`)
  return `${name} ${pkg.version} ${flavour.replace(/\.xz$/, '')}`
}
