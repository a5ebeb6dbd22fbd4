import {existsSync} from 'node:fs'
import {copyFile, lstat, mkdir, rename, rm} from 'node:fs/promises'
import {join} from 'node:path'

import {BugError, InputError} from '../errors.js'
import type {DistroModule} from './family.js'
import type {FetchedSource, SourceIO} from '../kernel/source-io.js'
import type {KernelSourceSpec} from '../recipe/schema.js'
import {pinnedFile} from '../util/download.js'
import {run} from '../util/exec.js'

/**
 * What every family's source RPM shares: the pin, the file (given or downloaded), and its payload
 * unpacked without root. What the payload means (a tree, a patch queue) is each module's.
 */

export type SrpmSpec = Extract<KernelSourceSpec, {kind: 'srpm'}>
export type {FetchedSource}

/** a kernel tarball in a source RPM: RHEL's patched tree, SUSE's vanilla one */
const TREE_TARBALL = /^linux-.*\.tar\.(xz|gz|bz2|zst)$/

/** The name a user knows the source RPM by. */
export function srpmName(spec: SrpmSpec): string {
  return spec.url.split('/').at(-1) ?? spec.url
}

/** A source RPM is checked against its pin wherever it comes from: a build refuses one without. */
export function requireSrpmPin(spec: SrpmSpec, localFile: string | undefined): string {
  if (spec.sha256) return spec.sha256
  throw new InputError(`recipe.kernel.source is the source RPM ${spec.url}, with no sha256`, {
    details: ['  a source RPM is signed, not published with a checksum: a build needs the sha256 of a copy you checked (rpm -K)'],
    hint: `pin it: set recipe.kernel.source.sha256 to the sha256sum of that .src.rpm${localFile ? '' : ', and give the copy with --kernel-source-file <path> if the URL needs a subscription'}`,
  })
}

/** The .src.rpm, checked against its pin: --kernel-source-file, or downloaded into the cache. */
export async function srpmFile(spec: SrpmSpec, digest: string, io: SourceIO): Promise<string> {
  return pinnedFile(
    {url: spec.url, sha256: digest, pinnedBy: 'recipe.kernel.source.sha256', cacheDir: io.cacheDir, given: io.localFile ? {path: io.localFile, flag: '--kernel-source-file'} : undefined},
    {signal: io.signal, progress: io.progress},
  )
}

/**
 * Unpacks a source RPM's payload into dir without root: rpm2cpio, then cpio. Only a flat payload
 * (file names without a folder, as rpmbuild -bs makes them) is unpacked, so nothing lands outside
 * dir. `patterns` limits what is written (cpio globs). Returns every name in the payload.
 */
export async function unpackSrpm(file: string, dir: string, io: SourceIO, patterns: string[] = []): Promise<string[]> {
  await rm(dir, {recursive: true, force: true})
  await mkdir(dir, {recursive: true})
  const cpio = `${dir}.cpio`
  // a refusal names the file as the user gave it (--kernel-source-file), not the cache's copy read here
  const shown = io.localFile ?? file
  io.progress(`unpacking ${file}`)
  const r = await run('rpm2cpio', [file], {stdoutFile: cpio, what: `read the payload of ${file}`, logFile: io.logFile, signal: io.signal, reject: false})
  if (r.exitCode !== 0) {
    await rm(cpio, {force: true})
    throw new InputError(`${shown} is not a readable RPM: ${r.stderr.trim().split('\n').slice(-2).join(' | ') || `rpm2cpio exited with ${r.exitCode}`}`, {hint: 'give the kernel\'s .src.rpm'})
  }
  try {
    // --force-local: a name with a colon is a file, not host:file
    const listed = await run('cpio', ['-it', '--quiet', '--force-local', '-F', cpio], {what: `list the payload of ${file}`, signal: io.signal})
    const names = listed.stdout.split('\n').filter(Boolean).map((n) => n.replace(/^\.\//, ''))
    const nested = names.filter((n) => n.includes('/') || n === '..' || n === '.')
    if (nested.length) {
      throw new InputError(`${shown} is not a source RPM: its payload has paths, not plain file names (${nested.slice(0, 3).join(', ')})`, {hint: 'give the kernel\'s .src.rpm, not a binary RPM'})
    }
    await run('cpio', ['-idm', '--quiet', '--no-absolute-filenames', '--no-preserve-owner', '--force-local', '-F', cpio, ...patterns], {
      cwd: dir,
      what: `unpack the payload of ${file}`,
      logFile: io.logFile,
      signal: io.signal,
    })
    return names
  } finally {
    await rm(cpio, {force: true})
  }
}

/** The one linux-*.tar.* among the payload's names, a regular file; `shape` says what the family's SRPM holds. */
export async function kernelTarball(dir: string, names: string[], srpm: string, shape: string): Promise<string> {
  const tarballs = names.filter((n) => TREE_TARBALL.test(n))
  if (tarballs.length !== 1) {
    throw new InputError(`${srpm} holds ${tarballs.length ? `${tarballs.length} kernel tarballs (${tarballs.join(', ')})` : 'no kernel tarball linux-*.tar.{xz,gz,bz2,zst}'}, not one`, {
      details: [`  its files: ${[...names].sort().join(', ')}`],
      hint: shape,
    })
  }
  await requireRegularFile(dir, tarballs[0], srpm)
  return tarballs[0]
}

/** Refuses a payload entry that is not a regular file (a symlink could point anywhere). */
export async function requireRegularFile(dir: string, name: string, srpm: string): Promise<void> {
  if (!(await lstat(join(dir, name))).isFile()) throw new InputError(`${srpm}: ${name} is not a regular file`, {hint: 'give the kernel\'s .src.rpm'})
}

/** where the configs of a source RPM are kept: beside its tree in the tree cache */
export function configsDir(cacheDir: string, digest: string): string {
  return join(cacheDir, 'kernel-trees', `${digest}.configs`)
}

/** Copies these payload files (regular files only) into dest, complete or not at all. */
export async function keepFiles(dir: string, names: string[], dest: string): Promise<void> {
  const tmp = `${dest}.tmp-${process.pid}`
  await rm(tmp, {recursive: true, force: true})
  await mkdir(tmp, {recursive: true})
  for (const name of names) {
    const from = join(dir, name)
    if (existsSync(from) && (await lstat(from)).isFile()) await copyFile(from, join(tmp, name))
  }
  await rename(tmp, dest).catch(async (e) => {
    // another build kept the same files first
    if (!existsSync(dest)) throw e
    await rm(tmp, {recursive: true, force: true})
  })
}

/**
 * A family's source RPM as its module's source hooks: the pin checked before any work, the tree
 * and the distro config read by the family's own functions (RHEL's patched tarball, SUSE's queue).
 */
export function srpmSourceHooks(
  module: string,
  read: {tree(spec: SrpmSpec, io: SourceIO): Promise<FetchedSource>; config(spec: SrpmSpec, io: SourceIO, dest: string): Promise<string>},
): Pick<DistroModule, 'requireSourceInputs' | 'fetchSource' | 'distroConfig'> {
  const srpm = (spec: KernelSourceSpec): SrpmSpec => {
    if (spec.kind !== 'srpm') throw new BugError(`the ${module} module reads srpm sources, not ${spec.kind}`)
    return spec
  }
  return {
    requireSourceInputs(spec, localFile) {
      if (spec.kind === 'srpm') requireSrpmPin(spec, localFile)
    },
    fetchSource: (spec, io) => read.tree(srpm(spec), io),
    distroConfig: (spec, io, dest) => read.config(srpm(spec), io, dest),
  }
}
