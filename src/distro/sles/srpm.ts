import {existsSync} from 'node:fs'
import {lstat, mkdir, readFile, rm} from 'node:fs/promises'
import {join} from 'node:path'

import {InputError} from '../../errors.js'
import type {FetchedSource, SourceIO} from '../../kernel/source-io.js'
import {cachedTree, untar} from '../../kernel/tree-cache.js'
import {run} from '../../util/exec.js'
import {atomicWriteFile} from '../../util/fsx.js'
import {configsDir, keepFiles, kernelTarball, requireRegularFile, requireSrpmPin, srpmFile, srpmName, type SrpmSpec, unpackSrpm} from '../rpm.js'
import {addonEntries, parseSeriesConf, selectedPatches, seriesSymbols, type SuseSeriesLine} from './series-conf.js'

/**
 * SUSE's kernel source RPM (kernel-source-<version>.src.rpm): not a tree but a patch queue. The
 * vanilla linux-<SRCVERSION>.tar.xz, the patches in patches.<group>.tar.bz2 (each holding
 * patches.<group>/...), series.conf naming them in order with guards, and config.tar.bz2 holding
 * config/<arch>/<flavour>. The tree is the tarball with the series applied, as SUSE's %prep does.
 */

const SERIES = 'series.conf'
const EXTRA_SYMBOLS = 'extra-symbols'
const CONFIGS = 'config.tar.bz2'
const PATCH_ARCHIVE = /^patches\.[A-Za-z0-9_.+-]+\.tar\.bz2$/
/** a series entry names a file inside one of the archives: patches.<group>/<path>, nothing above it */
const PATCH_NAME = /^patches\.[^/]+\/[^\0]+$/
/** the kernel the sles module builds: x86_64's default flavour (kernel-default) */
export const DEFAULT_CONFIG = 'x86_64/default'
const SHAPE = 'a SUSE kernel source RPM holds the vanilla tree as one linux-<version>.tar.xz beside series.conf and the patches.*.tar.bz2 it names'

/** The vanilla tree with the series applied, made once per SRPM digest; config.tar.bz2 is kept beside it. */
export async function fromSuseSrpm(spec: SrpmSpec, io: SourceIO): Promise<FetchedSource> {
  const digest = requireSrpmPin(spec, io.localFile)
  const file = await srpmFile(spec, digest, io)
  const srpm = srpmName(spec)
  const tree = await cachedTree(io, digest, async (dest) => {
    const x = join(io.work, 'srpm')
    const names = await unpackSrpm(file, x, io)
    const tarball = await kernelTarball(x, names, srpm, SHAPE)
    if (!names.includes(SERIES)) {
      throw new InputError(`${srpm} has no ${SERIES}, so it is not a SUSE kernel source RPM`, {details: [`  its files: ${[...names].sort().join(', ')}`], hint: SHAPE})
    }
    await requireRegularFile(x, SERIES, srpm)
    await untar(join(x, tarball), dest, io)
    const patchesDir = join(x, 'patches')
    await unpackPatchArchives(x, names.filter((n) => PATCH_ARCHIVE.test(n)).sort(), patchesDir, srpm, io)
    const entries = await seriesOf(x, patchesDir)
    const symbols = seriesSymbols(names.includes(EXTRA_SYMBOLS) ? await readFile(join(x, EXTRA_SYMBOLS), 'utf8') : undefined)
    const selected = selectedPatches(entries, symbols)
    io.progress(`applying ${selected.length} of the ${entries.length} patches in ${SERIES} (symbols: ${[...symbols].join(' ') || 'none'})`)
    for (const entry of selected) await applyPatch(entry, patchesDir, dest, srpm, tarball, io)
    await keepFiles(x, names.filter((n) => n === CONFIGS), configsDir(io.cacheDir, digest))
    await rm(x, {recursive: true, force: true})
  })
  return {kind: 'srpm', tree, digest, package: srpm}
}

/**
 * The distribution's config config/<arch>/<flavour> from config.tar.bz2 (`config`, default
 * x86_64/default), written to dest. The archive is the one kept when the tree was made, or taken
 * from the SRPM again.
 */
export async function suseDistroConfig(spec: SrpmSpec, io: SourceIO, dest: string): Promise<string> {
  const digest = requireSrpmPin(spec, io.localFile)
  const srpm = srpmName(spec)
  const dir = configsDir(io.cacheDir, digest)
  if (!existsSync(dir)) {
    const file = await srpmFile(spec, digest, io)
    const x = join(io.work, 'srpm-configs')
    const names = await unpackSrpm(file, x, io, [CONFIGS])
    await keepFiles(x, names.filter((n) => n === CONFIGS), dir)
    await rm(x, {recursive: true, force: true})
  }
  const archive = join(dir, CONFIGS)
  if (!existsSync(archive)) throw new InputError(`${srpm} has no ${CONFIGS}, so it has no SUSE kernel config`, {hint: 'use kernel.config.base lean or defconfig, or give the kernel-source .src.rpm'})
  const wanted = spec.config ?? DEFAULT_CONFIG
  const listed = await run('tar', ['-tjf', archive], {what: `list ${CONFIGS} of ${srpm}`, signal: io.signal})
  const configs = listed.stdout.split('\n').filter((n) => /^config\/[^/]+\/[^/]+$/.test(n)).map((n) => n.slice('config/'.length))
  if (!configs.includes(wanted)) {
    throw new InputError(`${srpm} has no config/${wanted} in ${CONFIGS}${spec.config ? ' (recipe.kernel.source.config)' : ''}`, {
      details: [`  configs in ${CONFIGS}: ${configs.sort().join(', ') || 'none'}`],
      hint: 'set recipe.kernel.source.config to one of them, as <arch>/<flavour>',
    })
  }
  const x = join(io.work, 'suse-config')
  await rm(x, {recursive: true, force: true})
  await mkdir(x, {recursive: true})
  await run('tar', ['-xjf', archive, '-C', x, '--no-same-owner', '--no-same-permissions', `config/${wanted}`], {what: `take config/${wanted} out of ${CONFIGS}`, logFile: io.logFile, signal: io.signal})
  await requireRegularFile(x, `config/${wanted}`, srpm)
  const text = await readFile(join(x, 'config', wanted), 'utf8')
  await rm(x, {recursive: true, force: true})
  await atomicWriteFile(dest, text.endsWith('\n') ? text : `${text}\n`)
  return `${srpm} config/${wanted}`
}

/** Unpacks each patches.<group>.tar.bz2 into dir (GNU tar keeps every member inside it). */
async function unpackPatchArchives(x: string, archives: string[], dir: string, srpm: string, io: SourceIO): Promise<void> {
  await mkdir(dir, {recursive: true})
  for (const name of archives) {
    await requireRegularFile(x, name, srpm)
    const r = await run('tar', ['-xjf', join(x, name), '-C', dir, '--no-same-owner', '--no-same-permissions'], {what: `unpack ${name} of ${srpm}`, logFile: io.logFile, signal: io.signal, reject: false})
    if (r.exitCode !== 0) throw new InputError(`${srpm}: ${name} is not a readable tar.bz2: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`, {hint: 'give a complete, unmodified copy of the source RPM (rpm -K)'})
  }
}

/** series.conf's entries, then those of patches.addon/series if an archive holds one (as SUSE's apply-patches reads them). */
async function seriesOf(x: string, patchesDir: string): Promise<SuseSeriesLine[]> {
  const entries = parseSeriesConf(await readFile(join(x, SERIES), 'utf8'))
  const addon = join(patchesDir, 'patches.addon', 'series')
  if (existsSync(addon) && (await lstat(addon)).isFile()) entries.push(...addonEntries(await readFile(addon, 'utf8')))
  return entries
}

/**
 * Applies one patch of the series with patch -p1, no fuzz (-F0, as SUSE's apply-patches), files it
 * empties removed (-E). A patch that does not apply fails the whole tree, naming it and its line.
 */
async function applyPatch(entry: SuseSeriesLine, patchesDir: string, tree: string, srpm: string, tarball: string, io: SourceIO): Promise<void> {
  const where = `${entry.file} line ${entry.line}`
  if (!PATCH_NAME.test(entry.patch) || entry.patch.split('/').includes('..')) {
    throw new InputError(`${srpm}: ${where} names ${entry.patch}, which is not a file under a patches.<group>/ folder`, {hint: 'give a complete, unmodified copy of the source RPM (rpm -K)'})
  }
  const file = join(patchesDir, entry.patch)
  if (!existsSync(file) || !(await lstat(file)).isFile()) {
    throw new InputError(`${srpm}: ${where} names ${entry.patch}, which none of its patches.*.tar.bz2 holds`, {hint: 'give a complete, unmodified copy of the source RPM (rpm -K)'})
  }
  // -f: never ask, and never take a patch that looks reversed for a reversed one
  const r = await run('patch', ['-p1', '-F0', '-E', '-f', '--no-backup-if-mismatch', '--reject-file=-', '-i', file], {cwd: tree, what: `apply ${entry.patch}`, logFile: io.logFile, signal: io.signal, reject: false})
  if (r.exitCode !== 0) {
    const output = `${r.stdout}\n${r.stderr}`.trim().split('\n').filter(Boolean)
    throw new InputError(`${srpm}: ${entry.patch} (${where}) does not apply to ${tarball} and the patches before it`, {
      details: output.slice(-12).map((l) => `  ${l}`),
      hint: 'a SUSE source RPM\'s series applies to its own tarball: check the copy is complete and unmodified (rpm -K)',
    })
  }
}
