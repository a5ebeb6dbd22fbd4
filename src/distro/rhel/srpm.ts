import {existsSync} from 'node:fs'
import {copyFile, lstat, mkdir, readFile, readdir, rename, rm} from 'node:fs/promises'
import {join} from 'node:path'

import {InputError} from '../../errors.js'
import type {KernelSourceSpec} from '../../recipe/schema.js'
import {downloadPinned} from '../../util/download.js'
import {run} from '../../util/exec.js'
import {atomicWriteFile, sha256File} from '../../util/fsx.js'
import type {FetchedSource, SourceIO} from '../../kernel/source.js'
import {cachedTree, untar} from '../../kernel/tree-cache.js'

type SrpmSpec = Extract<KernelSourceSpec, {kind: 'srpm'}>

/** the tree: the kernel spec's Source0 */
const TREE_TARBALL = /^linux-.*\.tar\.(xz|gz|bz2|zst)$/
const CONFIG = /^kernel-.*\.config$/
/**
 * The non-debug x86_64 config, by the name each release gives it, first match wins: RHEL 8
 * (kernel-x86_64.config), RHEL 9 and 10 (kernel-x86_64-rhel.config; their SRPMs may also carry
 * Fedora's, which a recipe names in `config` if it wants it), RHEL 7 (kernel-3.10.0-x86_64.config).
 */
const X86_64_CONFIGS = [/^kernel-x86_64\.config$/, /^kernel-x86_64-rhel\.config$/, /^kernel-\d[^-]*-x86_64\.config$/]

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

/** The tree of a source RPM's linux-*.tar.*, unpacked once per SRPM digest; its configs are kept beside it. */
export async function fromSrpm(spec: SrpmSpec, io: SourceIO): Promise<FetchedSource> {
  const digest = requireSrpmPin(spec, io.localFile)
  const file = await srpmFile(spec, digest, io)
  const tree = await cachedTree(io, digest, async (dest) => {
    const x = join(io.work, 'srpm')
    const names = await unpackSrpm(file, x, io)
    const tarball = await treeTarball(x, names, srpmName(spec))
    await untar(join(x, tarball), dest, io)
    await keepConfigs(x, names, configsDir(io.cacheDir, digest))
    await rm(x, {recursive: true, force: true})
  })
  return {kind: 'srpm', tree, digest, package: srpmName(spec)}
}

/**
 * The distribution's config from the source RPM (`config`, or the non-debug x86_64 one), written to
 * dest. The configs are those kept when the tree was unpacked, or taken from the SRPM again.
 */
export async function srpmDistroConfig(spec: SrpmSpec, io: SourceIO, dest: string): Promise<string> {
  const digest = requireSrpmPin(spec, io.localFile)
  const dir = configsDir(io.cacheDir, digest)
  if (!existsSync(dir)) {
    const file = await srpmFile(spec, digest, io)
    const x = join(io.work, 'srpm-configs')
    const names = await unpackSrpm(file, x, io, ['kernel-*.config'])
    await keepConfigs(x, names, dir)
    await rm(x, {recursive: true, force: true})
  }
  const name = pickConfig((await readdir(dir)).sort(), spec)
  const text = await readFile(join(dir, name), 'utf8')
  await atomicWriteFile(dest, text.endsWith('\n') ? text : `${text}\n`)
  return `${srpmName(spec)} ${name}`
}

/** The config a recipe names, else the first of X86_64_CONFIGS present (exactly one of its kind). */
export function pickConfig(names: string[], spec: SrpmSpec): string {
  const configs = names.filter((n) => CONFIG.test(n))
  const found = [`  configs in ${srpmName(spec)}: ${configs.join(', ') || 'none'}`]
  if (spec.config) {
    if (configs.includes(spec.config)) return spec.config
    throw new InputError(`${srpmName(spec)} has no ${spec.config} (recipe.kernel.source.config)`, {details: found, hint: 'set recipe.kernel.source.config to one of the configs it has'})
  }
  for (const pattern of X86_64_CONFIGS) {
    const hits = configs.filter((n) => pattern.test(n))
    if (hits.length === 1) return hits[0]
    if (hits.length > 1) throw new InputError(`${srpmName(spec)} has several x86_64 configs: ${hits.join(', ')}`, {details: found, hint: 'name the one to use in recipe.kernel.source.config'})
  }
  throw new InputError(`${srpmName(spec)} has no non-debug x86_64 config (kernel-x86_64.config, kernel-x86_64-rhel.config or kernel-<version>-x86_64.config)`, {
    details: found,
    hint: 'name the config to use in recipe.kernel.source.config, or use kernel.config.base lean or defconfig',
  })
}

/** The .src.rpm, checked against its pin: --kernel-source-file, or downloaded into the cache. */
async function srpmFile(spec: SrpmSpec, digest: string, io: SourceIO): Promise<string> {
  if (io.localFile) {
    io.progress(`checking ${io.localFile}`)
    const got = await sha256File(io.localFile)
    if (got !== digest) throw new InputError(`--kernel-source-file ${io.localFile}: sha256 ${got} is not the recipe's ${digest} (${srpmName(spec)})`, {hint: 'give a copy of the source RPM the recipe pins'})
    return io.localFile
  }
  const file = join(io.cacheDir, 'downloads', 'srpms', `${digest.slice(0, 16)}-${srpmName(spec)}`)
  io.progress(`fetching ${spec.url}`)
  return downloadPinned(spec.url, digest, file, {signal: io.signal, progress: io.progress, pinnedBy: 'recipe.kernel.source.sha256'})
}

/**
 * Unpacks a source RPM's payload into dir without root: rpm2cpio, then cpio. Only a flat payload
 * (file names without a folder, as rpmbuild -bs makes them) is unpacked, so nothing lands outside
 * dir. `patterns` limits what is written (cpio globs). Returns every name in the payload.
 */
async function unpackSrpm(file: string, dir: string, io: SourceIO, patterns: string[] = []): Promise<string[]> {
  await rm(dir, {recursive: true, force: true})
  await mkdir(dir, {recursive: true})
  const cpio = `${dir}.cpio`
  io.progress(`unpacking ${file}`)
  const r = await run('rpm2cpio', [file], {stdoutFile: cpio, what: `read the payload of ${file}`, logFile: io.logFile, signal: io.signal, reject: false})
  if (r.exitCode !== 0) {
    await rm(cpio, {force: true})
    throw new InputError(`${file} is not a readable RPM: ${r.stderr.trim().split('\n').slice(-2).join(' | ') || `rpm2cpio exited with ${r.exitCode}`}`, {hint: 'give the kernel\'s .src.rpm'})
  }
  try {
    // --force-local: a name with a colon is a file, not host:file
    const listed = await run('cpio', ['-it', '--quiet', '--force-local', '-F', cpio], {what: `list the payload of ${file}`, signal: io.signal})
    const names = listed.stdout.split('\n').filter(Boolean).map((n) => n.replace(/^\.\//, ''))
    const nested = names.filter((n) => n.includes('/') || n === '..' || n === '.')
    if (nested.length) {
      throw new InputError(`${file} is not a source RPM: its payload has paths, not plain file names (${nested.slice(0, 3).join(', ')})`, {hint: 'give the kernel\'s .src.rpm, not a binary RPM'})
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

/** The one linux-*.tar.* among the payload's names, a regular file. */
async function treeTarball(dir: string, names: string[], srpm: string): Promise<string> {
  const tarballs = names.filter((n) => TREE_TARBALL.test(n))
  if (tarballs.length !== 1) {
    throw new InputError(`${srpm} holds ${tarballs.length ? `${tarballs.length} kernel tarballs (${tarballs.join(', ')})` : 'no kernel tarball linux-*.tar.{xz,gz,bz2,zst}'}, not one`, {
      details: [`  its files: ${[...names].sort().join(', ')}`],
      hint: 'a RHEL-family kernel source RPM holds its tree as one linux-<version>-<release>.tar.xz',
    })
  }
  if (!(await lstat(join(dir, tarballs[0]))).isFile()) throw new InputError(`${srpm}: ${tarballs[0]} is not a regular file`, {hint: 'give the kernel\'s .src.rpm'})
  return tarballs[0]
}

/** where the configs of a source RPM are kept: beside its tree in the tree cache */
function configsDir(cacheDir: string, digest: string): string {
  return join(cacheDir, 'kernel-trees', `${digest}.configs`)
}

/** Copies the payload's kernel-*.config (regular files only) into dest, complete or not at all. */
async function keepConfigs(dir: string, names: string[], dest: string): Promise<void> {
  const tmp = `${dest}.tmp-${process.pid}`
  await rm(tmp, {recursive: true, force: true})
  await mkdir(tmp, {recursive: true})
  for (const name of names.filter((n) => CONFIG.test(n))) {
    const from = join(dir, name)
    if (existsSync(from) && (await lstat(from)).isFile()) await copyFile(from, join(tmp, name))
  }
  await rename(tmp, dest).catch(async (e) => {
    // another build kept the same configs first
    if (!existsSync(dest)) throw e
    await rm(tmp, {recursive: true, force: true})
  })
}
