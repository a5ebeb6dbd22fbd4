import {existsSync} from 'node:fs'
import {readFile, readdir, rm} from 'node:fs/promises'
import {join} from 'node:path'

import {InputError} from '../../errors.js'
import {atomicWriteFile} from '../../util/fsx.js'
import type {FetchedSource, SourceIO} from '../../kernel/source-io.js'
import {cachedTree, untar} from '../../kernel/tree-cache.js'
import {configsDir, keepFiles, kernelTarball, requireSrpmPin, srpmFile, srpmName, type SrpmSpec, unpackSrpm} from '../rpm.js'

const CONFIG = /^kernel-.*\.config$/
/**
 * The non-debug x86_64 config, by the name each release gives it, first match wins: RHEL 8
 * (kernel-x86_64.config), RHEL 9 and 10 (kernel-x86_64-rhel.config; their SRPMs may also carry
 * Fedora's, which a recipe names in `config` if it wants it), RHEL 7 (kernel-3.10.0-x86_64.config).
 */
const X86_64_CONFIGS = [/^kernel-x86_64\.config$/, /^kernel-x86_64-rhel\.config$/, /^kernel-\d[^-]*-x86_64\.config$/]

/** The tree of a source RPM's linux-*.tar.*, unpacked once per SRPM digest; its configs are kept beside it. */
export async function fromSrpm(spec: SrpmSpec, io: SourceIO): Promise<FetchedSource> {
  const digest = requireSrpmPin(spec, io.localFile)
  const file = await srpmFile(spec, digest, io)
  const tree = await cachedTree(io, digest, async (dest) => {
    const x = join(io.work, 'srpm')
    const names = await unpackSrpm(file, x, io)
    // SUSE's source RPMs hold a vanilla tarball too, with the patch queue that makes it SUSE's kernel beside it
    if (names.includes('series.conf')) {
      throw new InputError(`${srpmName(spec)} is a SUSE kernel source RPM: a patch queue (series.conf, patches.*.tar.bz2) over a vanilla tarball, not RHEL's patched tree`, {
        hint: 'build it with a recipe of distro.family sles, whose module applies the queue',
      })
    }
    const tarball = await kernelTarball(x, names, srpmName(spec), 'a RHEL-family kernel source RPM holds its tree as one linux-<version>-<release>.tar.xz')
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

/** Keeps the payload's kernel-*.config beside the tree. */
function keepConfigs(dir: string, names: string[], dest: string): Promise<void> {
  return keepFiles(dir, names.filter((n) => CONFIG.test(n)), dest)
}
