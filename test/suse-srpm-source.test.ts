import {existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {basename, join} from 'node:path'
import {pathToFileURL} from 'node:url'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {rhelModule} from '../src/distro/rhel/index.js'
import {slesModule} from '../src/distro/sles/index.js'
import {fetchKernelSource, requireSourceInputs} from '../src/kernel/source.js'
import type {SourceIO} from '../src/kernel/source-io.js'
import type {KernelSourceSpec} from '../src/recipe/schema.js'
import {run} from '../src/util/exec.js'
import {sha256File} from '../src/util/fsx.js'
import {oldKernelsArchive} from './helpers/paths.js'
import {buildSrpm, refusal} from './helpers/srpm.js'
import {diff, SUSE_MEMBER, SUSE_SRPM, suseKernelSrpm, type SuseSrpm} from './helpers/suse-srpm.js'

// A real source RPM in the shape of SLE 15's kernel-source .src.rpm (a vanilla tarball, patch
// archives, series.conf with guards, config.tar.bz2), made with rpmbuild -bs from the 5.4.59 tree
// of the old-kernels archive, read by the sles module as a kernel source.
const archive = oldKernelsArchive()
const dir = mkdtempSync(join(tmpdir(), 'suse-srpm-source-'))
const cacheDir = join(dir, 'cache')
let srpm: SuseSrpm
afterAll(() => rm(dir, {recursive: true, force: true}))

function io(extra: Partial<SourceIO> = {}, lines: string[] = []): SourceIO {
  return {cacheDir, work: mkdtempSync(join(dir, 'work-')), progress: (l) => lines.push(l), ...extra}
}
const spec = (extra: Partial<Extract<KernelSourceSpec, {kind: 'srpm'}>> = {}): KernelSourceSpec => ({kind: 'srpm', url: pathToFileURL(srpm.file).href, sha256: srpm.sha256, ...extra})
function distroConfig(source: KernelSourceSpec, io: {cacheDir: string; work: string; localFile?: string}, dest: string): Promise<string> {
  return slesModule.distroConfig!(source, {...io, progress: () => {}}, dest)
}
const seconds = (t: number) => `${((Date.now() - t) / 1000).toFixed(1)} s`

describe('kernel source: a SUSE kernel-source RPM (a patch queue over a vanilla tarball)', () => {
  beforeAll(async () => {
    if (!existsSync(archive)) return
    const t = Date.now()
    srpm = await suseKernelSrpm()
    console.log(`SUSE source RPM ready (${(statSync(srpm.file).size / 1e6).toFixed(0)} MB, made or cached) in ${seconds(t)}`)
  }, 10 * 60_000)

  it('the old-kernels archive is here', () => {
    expect(existsSync(archive), `${archive} missing: CI has ../shared beside the clone; set CVM_TEST_OLD_KERNELS elsewhere`).toBe(true)
  })

  it('the tree is the vanilla tarball with exactly the patches its guards select, in series order', async () => {
    const lines: string[] = []
    let t = Date.now()
    const got = await fetchKernelSource(spec(), io({}, lines), slesModule)
    console.log(`fetch (copy) + rpm2cpio + cpio + untar + series of the SUSE SRPM: ${seconds(t)}`)
    expect(got).toEqual({kind: 'srpm', tree: join(cacheDir, 'kernel-trees', srpm.sha256), digest: srpm.sha256, package: SUSE_SRPM})
    expect(lines).toContain('applying 3 of the 6 patches in series.conf (symbols: cvm_test)')
    t = Date.now()
    const member = await fetchKernelSource({kind: 'archive', file: 'old-kernels.tar.zst', sha256: await sha256File(archive), member: SUSE_MEMBER, origin: 'test'}, io({localFile: archive}), slesModule)
    console.log(`the same member from the archive: ${seconds(t)}`)
    // every other file is the member's, byte for byte; the excluded patches' files are not there
    const d = await run('diff', ['-r', '--brief', '--no-dereference', member.tree, got.tree], {reject: false})
    expect(d.stdout.split('\n').sort()).toEqual([`Files ${member.tree}/Makefile and ${got.tree}/Makefile differ`, `Files ${member.tree}/README and ${got.tree}/README differ`, `Only in ${got.tree}: cvm-test-amend`])
    for (const [path, text] of Object.entries(srpm.patched)) expect(readFileSync(join(got.tree, path), 'utf8'), path).toBe(text)
    expect(readFileSync(join(got.tree, 'README'), 'utf8')).toContain('cvm-image test: patches.suse/cvm-test-readme.patch, amended by patches.fixes/cvm-test-readme-amend.patch\n')
    expect(readFileSync(join(got.tree, 'Makefile'), 'utf8')).toMatch(/^VERSION = 5\nPATCHLEVEL = 4\nSUBLEVEL = 59\n/m)
    for (const excluded of ['cvm-test-arch', 'cvm-test-undefined', 'cvm-test-disabled']) expect(existsSync(join(got.tree, excluded)), excluded).toBe(false)
    // no patch leftovers (.orig, .rej) and nothing but the tree in the cache
    expect((await run('find', [got.tree, '(', '-name', '*.orig', '-o', '-name', '*.rej', ')'])).stdout).toBe('')
    expect(readdirSync(join(cacheDir, 'kernel-trees')).sort()).toEqual([basename(member.tree), srpm.sha256, `${srpm.sha256}.configs`].sort())
  }, 10 * 60_000)

  it('a second fetch, from --kernel-source-file, is a cache hit: the same tree, nothing unpacked or applied', async () => {
    const lines: string[] = []
    const first = join(cacheDir, 'kernel-trees', srpm.sha256)
    const before = statSync(join(first, 'Makefile')).ino
    const got = await fetchKernelSource(spec({url: 'https://updates.example.invalid/kernel-source-5.4.59-1.1.src.rpm'}), io({localFile: srpm.file}, lines), slesModule)
    expect(got.tree).toBe(first)
    expect(statSync(join(got.tree, 'Makefile')).ino).toBe(before)
    expect(lines.filter((l) => /unpacking|applying/.test(l))).toEqual([])
  })

  it('refuses a source RPM whose sha256 is not the pin, downloaded or given, and one with no pin before any work', async () => {
    const wrong = '0'.repeat(64)
    const given = await refusal(fetchKernelSource(spec({sha256: wrong}), io({localFile: srpm.file}), slesModule))
    expect(given.message).toBe(`--kernel-source-file ${srpm.file}: sha256 ${srpm.sha256} is not the pinned ${wrong} (recipe.kernel.source.sha256, for ${pathToFileURL(srpm.file).href})`)
    const fresh = join(dir, 'fresh-cache')
    const downloaded = await refusal(fetchKernelSource(spec({sha256: wrong}), io({cacheDir: fresh}), slesModule))
    expect(downloaded.message).toContain(`has sha256 ${srpm.sha256}, not the pinned ${wrong}`)
    expect(existsSync(join(fresh, 'kernel-trees'))).toBe(false)
    expect(() => requireSourceInputs(spec({sha256: null}), srpm.file, slesModule)).toThrow(`recipe.kernel.source is the source RPM ${pathToFileURL(srpm.file).href}, with no sha256`)
  })

  it('config base distro is config/x86_64/default of config.tar.bz2 byte for byte, or the <arch>/<flavour> the recipe names, also with no tree made', async () => {
    const dest = join(dir, 'distro.config')
    expect(await distroConfig(spec(), {cacheDir, work: mkdtempSync(join(dir, 'work-'))}, dest)).toBe(`${SUSE_SRPM} config/x86_64/default`)
    expect(readFileSync(dest, 'utf8')).toBe(srpm.configs['x86_64/default'])
    expect(readFileSync(dest, 'utf8')).toMatch(/^# cvm-image test config: config\/x86_64\/default\n/)
    // a cache with no tree and no kept config.tar.bz2: it comes out of the SRPM given on the command line
    const fresh = join(dir, 'configs-only')
    const t = Date.now()
    const picked = await distroConfig(spec({config: 'x86_64/debug', url: 'https://updates.example.invalid/kernel-source.src.rpm'}), {cacheDir: fresh, work: mkdtempSync(join(dir, 'work-')), localFile: srpm.file}, dest)
    console.log(`config.tar.bz2 alone out of the SRPM: ${seconds(t)}`)
    expect(picked).toBe('kernel-source.src.rpm config/x86_64/debug')
    expect(readFileSync(dest, 'utf8')).toBe(srpm.configs['x86_64/debug'])
    expect(existsSync(join(fresh, 'kernel-trees', srpm.sha256))).toBe(false)
    const missing = await refusal(distroConfig(spec({config: 'x86_64/kvmsmall'}), {cacheDir, work: mkdtempSync(join(dir, 'work-'))}, dest))
    expect(missing.message).toBe(`${SUSE_SRPM} has no config/x86_64/kvmsmall in config.tar.bz2 (recipe.kernel.source.config)`)
    expect(missing.details).toEqual(['  configs in config.tar.bz2: arm64/default, x86_64/debug, x86_64/default'])
  })
})

describe('kernel source: SUSE source RPMs whose series does not make a tree', () => {
  const readme = 'Linux kernel\n============\n\nThere are several guides for kernel developers and users.\n'
  /** a small SUSE-shaped SRPM: a two-file linux-5.4.59 tarball, these patches in patches.suse.tar.bz2, this series.conf */
  async function small(name: string, patches: Record<string, string>, series: string): Promise<{source: KernelSourceSpec; file: string}> {
    const top = join(dir, name, 'src')
    mkdirSync(join(top, SUSE_MEMBER), {recursive: true})
    writeFileSync(join(top, SUSE_MEMBER, 'Makefile'), 'VERSION = 5\nPATCHLEVEL = 4\nSUBLEVEL = 59\n')
    writeFileSync(join(top, SUSE_MEMBER, 'README'), readme)
    await run('tar', ['-czf', join(dir, name, `${SUSE_MEMBER}.tar.gz`), '-C', top, SUSE_MEMBER])
    for (const [p, text] of Object.entries(patches)) {
      mkdirSync(join(top, 'patches.suse'), {recursive: true})
      writeFileSync(join(top, p), text)
    }
    await run('tar', ['-cjf', join(dir, name, 'patches.suse.tar.bz2'), '-C', top, ...Object.keys(patches)])
    const file = await buildSrpm(join(dir, name, 'rpmbuild'), {
      name: 'kernel-source',
      version: '5.4.59',
      release: '1',
      sources: {[`${SUSE_MEMBER}.tar.gz`]: {file: join(dir, name, `${SUSE_MEMBER}.tar.gz`)}, 'patches.suse.tar.bz2': {file: join(dir, name, 'patches.suse.tar.bz2')}, 'series.conf': {text: series}},
    })
    return {source: {kind: 'srpm', url: `https://example.invalid/${name}.src.rpm`, sha256: await sha256File(file)}, file}
  }
  const smallCache = join(dir, 'small-cache')
  const fetch = ({source, file}: {source: KernelSourceSpec; file: string}) => fetchKernelSource(source, io({cacheDir: smallCache, localFile: file}), slesModule)

  it('a patch that does not apply fails the fetch, naming it, its series.conf line and patch\'s output; no tree is kept', async () => {
    const good = await diff('README', readme, readme.replace('several', 'some'), dir)
    const bad = await diff('README', readme.replace('kernel developers', 'hackers'), 'Linux kernel\n', dir)
    const s = await small('bad-patch', {'patches.suse/good.patch': good, 'patches.suse/bad.patch': bad}, '# series\n\tpatches.suse/good.patch\n\n\tpatches.suse/bad.patch\n')
    const e = await refusal(fetch(s))
    expect(e.message).toBe(`bad-patch.src.rpm: patches.suse/bad.patch (series.conf line 4) does not apply to ${SUSE_MEMBER}.tar.gz and the patches before it`)
    expect(e.details.join('\n')).toMatch(/Hunk #1 FAILED at 1\./)
    // neither the tree nor a half-patched temp copy is left in the cache
    expect(readdirSync(join(smallCache, 'kernel-trees'))).toEqual([])
  })

  it('a series entry no archive holds is refused, naming it and its line', async () => {
    const s = await small('missing-patch', {'patches.suse/good.patch': await diff('README', readme, `${readme}more\n`, dir)}, 'patches.suse/good.patch\npatches.fixes/gone.patch\n')
    const e = await refusal(fetch(s))
    expect(e.message).toBe('missing-patch.src.rpm: series.conf line 2 names patches.fixes/gone.patch, which none of its patches.*.tar.bz2 holds')
  })

  it('a series entry outside the patches folders is refused before patch reads it', async () => {
    const s = await small('escaping-patch', {'patches.suse/good.patch': await diff('README', readme, `${readme}more\n`, dir)}, 'patches.suse/../../etc/passwd\n')
    const e = await refusal(fetch(s))
    expect(e.message).toBe('escaping-patch.src.rpm: series.conf line 1 names patches.suse/../../etc/passwd, which is not a file under a patches.<group>/ folder')
  })

  it('the rhel module refuses a SUSE source RPM instead of taking its vanilla tarball for the tree', async () => {
    const s = await small('suse-for-rhel', {'patches.suse/good.patch': await diff('README', readme, `${readme}more\n`, dir)}, 'patches.suse/good.patch\n')
    const e = await refusal(fetchKernelSource(s.source, io({cacheDir: join(dir, 'rhel-cache'), localFile: s.file}), rhelModule))
    expect(e.message).toBe('suse-for-rhel.src.rpm is a SUSE kernel source RPM: a patch queue (series.conf, patches.*.tar.bz2) over a vanilla tarball, not RHEL\'s patched tree')
    expect(e.hint).toMatch(/distro\.family sles/)
    expect(readdirSync(join(dir, 'rhel-cache', 'kernel-trees'))).toEqual([])
  })

  it('an SRPM with no series.conf (a RHEL one) is refused by the sles module, naming what it holds', async () => {
    const top = join(dir, 'rhel-shaped')
    mkdirSync(join(top, 'linux-4.18.0-1'), {recursive: true})
    writeFileSync(join(top, 'linux-4.18.0-1', 'Makefile'), 'VERSION = 4\n')
    await run('tar', ['-czf', join(top, 'linux-4.18.0-1.tar.gz'), '-C', top, 'linux-4.18.0-1'])
    const file = await buildSrpm(join(top, 'rpmbuild'), {version: '4.18.0', release: '1', sources: {'linux-4.18.0-1.tar.gz': {file: join(top, 'linux-4.18.0-1.tar.gz')}, 'kernel-x86_64.config': {text: 'CONFIG_X=y\n'}}})
    const e = await refusal(fetch({source: {kind: 'srpm', url: 'https://example.invalid/kernel-4.18.0-1.src.rpm', sha256: await sha256File(file)}, file}))
    expect(e.message).toBe('kernel-4.18.0-1.src.rpm has no series.conf, so it is not a SUSE kernel source RPM')
    expect(e.details).toEqual(['  its files: kernel-x86_64.config, kernel.spec, linux-4.18.0-1.tar.gz'])
  })
})
