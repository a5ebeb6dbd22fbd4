import {existsSync} from 'node:fs'
import {copyFile, mkdir, readFile, readdir, rename, rm, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {expect} from 'vitest'

import {InputError} from '../../src/errors.js'
import {run} from '../../src/util/exec.js'
import {sha256, sha256File} from '../../src/util/fsx.js'
import {oldKernelsArchive, sharedTestCache} from './paths.js'

/** What a source RPM is made of: its version, and each source by its name in the SRPM (a file to copy, or text). */
export interface SrpmContents {
  /** the package name; kernel unless given (SUSE's is kernel-source) */
  name?: string
  version: string
  release: string
  sources: Record<string, {file: string} | {text: string}>
}

/**
 * A real source RPM, made by `rpmbuild -bs` in topdir from a minimal kernel.spec listing `sources`
 * as Source0..n, as RHEL's kernel.spec lists its tarball and configs. The payload is gzip -1: the
 * tarball in it is compressed already, and rpm2cpio reads any payload compression the same way.
 */
export async function buildSrpm(topdir: string, contents: SrpmContents): Promise<string> {
  const sourcesDir = join(topdir, 'SOURCES')
  await mkdir(sourcesDir, {recursive: true})
  const names = Object.keys(contents.sources)
  for (const [name, from] of Object.entries(contents.sources)) {
    if ('file' in from) await copyFile(from.file, join(sourcesDir, name))
    else await writeFile(join(sourcesDir, name), from.text)
  }
  const spec = join(topdir, 'kernel.spec')
  await writeFile(spec, kernelSpec(contents.version, contents.release, names, contents.name))
  await run('rpmbuild', ['-bs', '--define', `_topdir ${topdir}`, '--define', '_source_payload w1.gzdio', spec], {what: 'make a test source RPM'})
  const dir = join(topdir, 'SRPMS')
  const made = (await readdir(dir)).filter((f) => f.endsWith('.src.rpm'))
  if (made.length !== 1) throw new Error(`rpmbuild -bs made ${made.join(', ') || 'nothing'} in ${dir}`)
  return join(dir, made[0])
}

function kernelSpec(version: string, release: string, sources: string[], name = 'kernel'): string {
  return [
    `Name: ${name}`,
    `Version: ${version}`,
    `Release: ${release}`,
    'Summary: The Linux kernel (a source RPM made by the cvm-image tests)',
    'License: GPLv2 and Redistributable, no modification permitted',
    ...sources.map((name, i) => `Source${i}: ${name}`),
    '',
    '%description',
    name === 'kernel' ? 'The shape of a RHEL kernel source RPM: the tree as one tarball, and the configs beside it.' : 'The shape of a SUSE kernel source RPM: a vanilla tarball, patch archives, series.conf and config.tar.bz2.',
    '',
  ].join('\n')
}

export const EL8_MEMBER = 'linux-4.18.0-147.5.1.el8'
export const EL8_SRPM = 'kernel-4.18.0-147.5.1.el8_1.src.rpm'

/** a config marked with its own name, so a test can tell which one was picked */
const marked = (name: string, body: string) => `# cvm-image test config: ${name}\n${body}CONFIG_LOCALVERSION="-${name.replace(/^kernel-|\.config$/g, '')}"\n`

export interface El8Srpm {
  file: string
  sha256: string
  /** the configs in it, by name */
  configs: Record<string, string>
}

/**
 * CentOS 8.1's kernel source RPM in shape, made from the tree the old-kernels archive holds:
 * linux-4.18.0-147.5.1.el8.tar.xz (xz -0, two threads), kernel-x86_64.config (the tree's own
 * x86_64_defconfig, marked), and marked kernel-x86_64-debug.config and kernel-aarch64.config.
 * Made once per test cache, keyed by the archive's sha256 and everything else that goes in.
 */
export async function el8KernelSrpm(): Promise<El8Srpm> {
  const archive = oldKernelsArchive()
  const key = sha256([await sha256File(archive), EL8_MEMBER, kernelSpec('4.18.0', '147.5.1.el8_1', []), marked('x', ''), 'xz -0 -T2', 'w1.gzdio', 'v1'].join('\0')).slice(0, 16)
  const dir = join(sharedTestCache(), 'srpm', key)
  const file = join(dir, EL8_SRPM)
  const configsFile = join(dir, 'configs.json')
  if (existsSync(file) && existsSync(configsFile)) {
    return {file, sha256: await sha256File(file), configs: JSON.parse(await readFile(configsFile, 'utf8')) as Record<string, string>}
  }
  const tmp = `${dir}.tmp-${process.pid}`
  await rm(tmp, {recursive: true, force: true})
  const x = join(tmp, 'x')
  await mkdir(x, {recursive: true})
  await run('tar', ['--use-compress-program=zstd -d --long=31', '-xf', archive, '-C', x, `${EL8_MEMBER}/`], {what: `unpack ${EL8_MEMBER} from ${archive}`})
  const tarball = join(tmp, `${EL8_MEMBER}.tar.xz`)
  await run('tar', ['-cJf', tarball, '-C', x, EL8_MEMBER], {env: {XZ_OPT: '-0 -T2'}, what: `pack ${EL8_MEMBER}.tar.xz`})
  const defconfig = await readFile(join(x, EL8_MEMBER, 'arch', 'x86', 'configs', 'x86_64_defconfig'), 'utf8')
  await rm(x, {recursive: true, force: true})
  const configs = {
    'kernel-x86_64.config': marked('kernel-x86_64.config', defconfig),
    'kernel-x86_64-debug.config': marked('kernel-x86_64-debug.config', `${defconfig}CONFIG_DEBUG_KERNEL=y\n`),
    'kernel-aarch64.config': marked('kernel-aarch64.config', ''),
  }
  const made = await buildSrpm(join(tmp, 'rpmbuild'), {
    version: '4.18.0',
    release: '147.5.1.el8_1',
    sources: {[`${EL8_MEMBER}.tar.xz`]: {file: tarball}, ...Object.fromEntries(Object.entries(configs).map(([n, text]) => [n, {text}]))},
  })
  await rename(made, join(tmp, EL8_SRPM))
  await writeFile(join(tmp, 'configs.json'), JSON.stringify(configs))
  await rm(join(tmp, 'rpmbuild'), {recursive: true, force: true})
  await rm(tarball)
  await rm(dir, {recursive: true, force: true})
  await rename(tmp, dir)
  return {file, sha256: await sha256File(file), configs}
}

/** The InputError a source fetch is refused with (the test fails on success or another error). */
export async function refusal(p: Promise<unknown>): Promise<InputError> {
  const e = await p.then(() => undefined, (e: unknown) => e)
  expect(e).toBeInstanceOf(InputError)
  return e as InputError
}
