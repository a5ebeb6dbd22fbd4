import {existsSync} from 'node:fs'
import {readdir} from 'node:fs/promises'
import {join} from 'node:path'

import {InputError} from '../../errors.js'
import type {SourceIO} from '../../kernel/source-io.js'
import type {KernelSourceSpec} from '../../recipe/schema.js'
import {run} from '../../util/exec.js'
import {atomicWriteFile, sha256File} from '../../util/fsx.js'
import {PrivateApt} from './apt.js'

type DebianPackageSource = Extract<KernelSourceSpec, {kind: 'debian-package'}>

/** Debian's flavours, best first: the cloud kernel is what a Debian cloud image ships. */
const DEBIAN_FLAVOURS = ['config.amd64_none_cloud-amd64.xz', 'config.amd64_none_amd64.xz']

/**
 * Debian's own kernel config for a source package linux-source-<line>, written to dest: the
 * cloud-amd64 config from linux-config-<line> of the same suite.
 */
export async function debianDistroConfig(source: DebianPackageSource, io: SourceIO, dest: string): Promise<string> {
  const name = source.package.replace(/^linux-source-/, 'linux-config-')
  const apt = new PrivateApt(io.cacheDir, source.mirror, source.suite)
  await apt.update(io.logFile, io.signal)
  const pkg = await apt.show(name, source.version)
  const dir = join(io.cacheDir, 'downloads', 'debian')
  const deb = join(dir, pkg.filename.split('/').at(-1)!)
  if (!existsSync(deb) || (await sha256File(deb)) !== pkg.sha256) await apt.download(pkg, dir, io.logFile, io.signal)
  const x = join(io.work, 'linux-config')
  await run('dpkg-deb', ['-x', deb, x], {what: `unpack ${deb}`, signal: io.signal})
  const src = join(x, 'usr', 'src', name)
  const files = existsSync(src) ? await readdir(src) : []
  const flavour = DEBIAN_FLAVOURS.find((f) => files.includes(f))
  if (!flavour) throw new InputError(`${name} ${pkg.version} has no amd64 config (looked for ${DEBIAN_FLAVOURS.join(', ')})`, {hint: 'use kernel.config.base lean or defconfig'})
  const text = (await run('xz', ['-dc', join(src, flavour)], {what: `unpack ${flavour}`})).stdout
  await atomicWriteFile(dest, text.endsWith('\n') ? text : `${text}\n`)
  return `${name} ${pkg.version} ${flavour.replace(/\.xz$/, '')}`
}
