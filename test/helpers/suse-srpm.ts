import {existsSync} from 'node:fs'
import {mkdir, readFile, rename, rm, writeFile} from 'node:fs/promises'
import {dirname, join} from 'node:path'

import {run} from '../../src/util/exec.js'
import {sha256, sha256File} from '../../src/util/fsx.js'
import {oldKernelsArchive, sharedTestCache} from './paths.js'
import {buildSrpm} from './srpm.js'

export const SUSE_MEMBER = 'linux-5.4.59'
export const SUSE_SRPM = 'kernel-source-5.4.59-1.1.src.rpm'
/** the symbol the test SRPM's extra-symbols defines */
export const EXTRA_SYMBOL = 'cvm_test'

/**
 * The test series, in SUSE's format: what each entry is and whether a series read with
 * extra-symbols' words applies it. The excluded patches apply cleanly: only their guards keep them out.
 */
export const SUSE_SERIES = [
  '# Kernel patches configuration file (a cvm-image test series in SUSE\'s format)',
  '',
  '\t########################################################',
  '\t# unguarded: applied',
  '\tpatches.suse/cvm-test-readme.patch',
  `\t+${EXTRA_SYMBOL}\tpatches.suse/cvm-test-extra-symbol.patch # applied: extra-symbols defines it`,
  '\t+x86_64\tpatches.suse/cvm-test-arch.patch # not applied: the architecture is no series symbol',
  '\t+jdoe\tpatches.suse/cvm-test-undefined.patch # not applied: nothing defines jdoe',
  '\t-\tpatches.suse/cvm-test-disabled.patch',
  '\t# applied (jdoe is not defined), after the README patch it amends',
  '\t-jdoe\tpatches.fixes/cvm-test-readme-amend.patch',
  '',
].join('\n')

/** a config marked with its place, so a test can tell which one was picked */
const marked = (name: string, body: string) => `# cvm-image test config: config/${name}\n${body}CONFIG_LOCALVERSION="-${name.replace('/', '-')}"\n`

export interface SuseSrpm {
  file: string
  sha256: string
  /** config.tar.bz2's configs, by <arch>/<flavour> */
  configs: Record<string, string>
  /** the files the selected patches change or add, by path in the tree, as they are after the series */
  patched: Record<string, string>
}

/**
 * A SUSE kernel-source RPM in shape, made from the 5.4.59 tree the old-kernels archive holds:
 * linux-5.4.59.tar.gz (gzip -1: the tarball's compression is tar's business, and this one is made
 * and read fastest), patches.suse.tar.bz2 and patches.fixes.tar.bz2 with diffs made here against
 * that tree, an empty patches.addon.tar.bz2 (SUSE ships empty archives too), series.conf
 * (SUSE_SERIES), extra-symbols, and config.tar.bz2 with marked config/x86_64/default (the tree's
 * x86_64_defconfig), config/x86_64/debug and config/arm64/default. Made once per test cache.
 */
export async function suseKernelSrpm(): Promise<SuseSrpm> {
  const archive = oldKernelsArchive()
  const key = sha256([await sha256File(archive), SUSE_MEMBER, SUSE_SERIES, marked('x/y', ''), 'gzip -1', 'w1.gzdio', 'v1'].join('\0')).slice(0, 16)
  const dir = join(sharedTestCache(), 'suse-srpm', key)
  const file = join(dir, SUSE_SRPM)
  const facts = join(dir, 'facts.json')
  if (existsSync(file) && existsSync(facts)) {
    const {configs, patched} = JSON.parse(await readFile(facts, 'utf8')) as Pick<SuseSrpm, 'configs' | 'patched'>
    return {file, sha256: await sha256File(file), configs, patched}
  }
  const tmp = `${dir}.tmp-${process.pid}`
  await rm(tmp, {recursive: true, force: true})
  const x = join(tmp, 'x')
  await mkdir(x, {recursive: true})
  await run('tar', ['--use-compress-program=zstd -d --long=31', '-xf', archive, '-C', x, `${SUSE_MEMBER}/`], {what: `unpack ${SUSE_MEMBER} from ${archive}`})
  const tree = join(x, SUSE_MEMBER)
  const tarball = join(tmp, `${SUSE_MEMBER}.tar.gz`)
  await run('tar', ['--use-compress-program=gzip -1', '-cf', tarball, '-C', x, SUSE_MEMBER], {what: `pack ${SUSE_MEMBER}.tar.gz`})

  // the patches: real diffs of the tree's own files, made with diff -u
  const readme = await readFile(join(tree, 'README'), 'utf8')
  const makefile = await readFile(join(tree, 'Makefile'), 'utf8')
  const insertAfterFirstLine = (text: string, line: string) => text.replace(/\n/, `\n${line}\n`)
  const readmeA = insertAfterFirstLine(readme, 'cvm-image test: patches.suse/cvm-test-readme.patch')
  const readmeB = readmeA.replace('cvm-test-readme.patch\n', 'cvm-test-readme.patch, amended by patches.fixes/cvm-test-readme-amend.patch\n')
  const makefileA = insertAfterFirstLine(makefile, '# cvm-image test: patches.suse/cvm-test-extra-symbol.patch')
  const amendFile = 'cvm-image test: a file patches.fixes/cvm-test-readme-amend.patch adds\n'
  const patches: Record<string, string> = {
    'patches.suse/cvm-test-readme.patch': await diff('README', readme, readmeA, tmp),
    'patches.suse/cvm-test-extra-symbol.patch': await diff('Makefile', makefile, makefileA, tmp),
    'patches.suse/cvm-test-arch.patch': await diff('cvm-test-arch', undefined, 'applied: +x86_64\n', tmp),
    'patches.suse/cvm-test-undefined.patch': await diff('cvm-test-undefined', undefined, 'applied: +jdoe\n', tmp),
    'patches.suse/cvm-test-disabled.patch': await diff('cvm-test-disabled', undefined, 'applied: -\n', tmp),
    'patches.fixes/cvm-test-readme-amend.patch': (await diff('README', readmeA, readmeB, tmp)) + (await diff('cvm-test-amend', undefined, amendFile, tmp)),
  }
  const patched = {README: readmeB, Makefile: makefileA, 'cvm-test-amend': amendFile}
  const defconfig = await readFile(join(tree, 'arch', 'x86', 'configs', 'x86_64_defconfig'), 'utf8')
  await rm(x, {recursive: true, force: true})

  const p = join(tmp, 'p')
  for (const [name, text] of Object.entries(patches)) {
    await mkdir(dirname(join(p, name)), {recursive: true})
    await writeFile(join(p, name), text)
  }
  const archives: Record<string, string> = {}
  for (const group of ['patches.suse', 'patches.fixes']) {
    archives[`${group}.tar.bz2`] = join(tmp, `${group}.tar.bz2`)
    await run('tar', ['-cjf', archives[`${group}.tar.bz2`], '-C', p, group], {what: `pack ${group}.tar.bz2`})
  }
  archives['patches.addon.tar.bz2'] = join(tmp, 'patches.addon.tar.bz2')
  await run('tar', ['-cjf', archives['patches.addon.tar.bz2'], '-T', '/dev/null'], {what: 'pack an empty patches.addon.tar.bz2'})

  const configs = {
    'x86_64/default': marked('x86_64/default', defconfig),
    'x86_64/debug': marked('x86_64/debug', `${defconfig}CONFIG_DEBUG_KERNEL=y\n`),
    'arm64/default': marked('arm64/default', ''),
  }
  const c = join(tmp, 'c')
  for (const [name, text] of Object.entries(configs)) {
    await mkdir(join(c, 'config', dirname(name)), {recursive: true})
    await writeFile(join(c, 'config', name), text)
  }
  const configTar = join(tmp, 'config.tar.bz2')
  await run('tar', ['-cjf', configTar, '-C', c, 'config'], {what: 'pack config.tar.bz2'})

  const made = await buildSrpm(join(tmp, 'rpmbuild'), {
    name: 'kernel-source',
    version: '5.4.59',
    release: '1.1',
    sources: {
      [`${SUSE_MEMBER}.tar.gz`]: {file: tarball},
      'series.conf': {text: SUSE_SERIES},
      'extra-symbols': {text: `${EXTRA_SYMBOL}\n`},
      'config.tar.bz2': {file: configTar},
      ...Object.fromEntries(Object.entries(archives).map(([n, f]) => [n, {file: f}])),
    },
  })
  await rename(made, join(tmp, SUSE_SRPM))
  await writeFile(join(tmp, 'facts.json'), JSON.stringify({configs, patched}))
  for (const name of ['rpmbuild', 'p', 'c', `${SUSE_MEMBER}.tar.gz`, 'config.tar.bz2', ...Object.keys(archives), 'diff']) await rm(join(tmp, name), {recursive: true, force: true})
  await rm(dir, {recursive: true, force: true})
  await rename(tmp, dir)
  return {file, sha256: await sha256File(file), configs, patched}
}

/** A unified diff of one file, a/<name> to b/<name> (undefined before: a new file), as `diff -u` writes it. */
export async function diff(name: string, before: string | undefined, after: string, tmp: string): Promise<string> {
  const d = join(tmp, 'diff')
  await mkdir(d, {recursive: true})
  const a = join(d, 'a')
  const b = join(d, 'b')
  await writeFile(b, after)
  if (before !== undefined) await writeFile(a, before)
  const r = await run('diff', ['-u', '--label', before === undefined ? '/dev/null' : `a/${name}`, '--label', `b/${name}`, before === undefined ? '/dev/null' : a, b], {reject: false})
  if (r.exitCode !== 1) throw new Error(`diff -u of ${name} exited with ${r.exitCode}: ${r.stderr}`)
  return `${r.stdout}\n`
}
