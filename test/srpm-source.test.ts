import {existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {InputError, isCvmError} from '../src/errors.js'
import {rhelModule} from '../src/distro/rhel/index.js'
import {fetchKernelSource, requireSourceInputs} from '../src/kernel/source.js'
import type {SourceIO} from '../src/kernel/source-io.js'
import type {KernelSourceSpec} from '../src/recipe/schema.js'
import {run} from '../src/util/exec.js'
import {sha256File} from '../src/util/fsx.js'
import {oldKernelsArchive} from './helpers/paths.js'
import {buildSrpm, EL8_MEMBER, EL8_SRPM, el8KernelSrpm, type El8Srpm, refusal} from './helpers/srpm.js'

/** the rhel module's distro config, as the configure stage asks for it */
function distroConfig(source: KernelSourceSpec, io: {cacheDir: string; work: string; localFile?: string}, dest: string): Promise<string> {
  return rhelModule.distroConfig!(source, {...io, progress: () => {}}, dest)
}

// A real source RPM in the shape of CentOS 8.1's kernel-4.18.0-147.5.1.el8_1.src.rpm, made with
// rpmbuild -bs from the 4.18 tree of the old-kernels archive, read as a kernel source.
const archive = oldKernelsArchive()
const dir = mkdtempSync(join(tmpdir(), 'srpm-source-'))
const cacheDir = join(dir, 'cache')
let srpm: El8Srpm
afterAll(() => rm(dir, {recursive: true, force: true}))

function io(extra: Partial<SourceIO> = {}, lines: string[] = []): SourceIO {
  return {cacheDir, work: mkdtempSync(join(dir, 'work-')), progress: (l) => lines.push(l), ...extra}
}
const spec = (extra: Partial<Extract<KernelSourceSpec, {kind: 'srpm'}>> = {}): KernelSourceSpec => ({kind: 'srpm', url: pathToFileURL(srpm.file).href, sha256: srpm.sha256, ...extra})
const seconds = (t: number) => `${((Date.now() - t) / 1000).toFixed(1)} s`

describe('kernel source: a RHEL-family source RPM', () => {
  beforeAll(async () => {
    if (!existsSync(archive)) return
    const t = Date.now()
    srpm = await el8KernelSrpm()
    console.log(`source RPM ready (${(statSync(srpm.file).size / 1e6).toFixed(0)} MB, made or cached) in ${seconds(t)}`)
  }, 10 * 60_000)

  it('the old-kernels archive is here', () => {
    expect(existsSync(archive), `${archive} missing: CI has ../shared beside the clone; set CVM_TEST_OLD_KERNELS elsewhere`).toBe(true)
  })

  it('unpacks the tree of the SRPM\'s linux-*.tar.xz, downloaded by URL: the same files, byte for byte, as the archive member', async () => {
    const lines: string[] = []
    let t = Date.now()
    const got = await fetchKernelSource(spec(), io({}, lines), rhelModule)
    console.log(`fetch (copy) + rpm2cpio + cpio + untar of the SRPM: ${seconds(t)}`)
    expect(got).toEqual({kind: 'srpm', tree: join(cacheDir, 'kernel-trees', srpm.sha256), digest: srpm.sha256, package: EL8_SRPM})
    expect(lines).toContain('unpacking the source tree')
    expect(existsSync(join(cacheDir, 'downloads', `${srpm.sha256.slice(0, 16)}-${EL8_SRPM}`))).toBe(true)
    t = Date.now()
    const member = await fetchKernelSource({kind: 'archive', file: 'old-kernels.tar.zst', sha256: await sha256File(archive), member: EL8_MEMBER, origin: 'test'}, io({localFile: archive}), rhelModule)
    console.log(`the same member from the archive: ${seconds(t)}`)
    const diff = await run('diff', ['-r', '--brief', '--no-dereference', member.tree, got.tree], {reject: false})
    expect(diff.stdout, 'the trees differ').toBe('')
    expect(diff.exitCode).toBe(0)
    const files = (await run('find', [got.tree, '-type', 'f'])).stdout.split('\n').length
    expect(files).toBeGreaterThan(60_000)
    expect(readFileSync(join(got.tree, 'Makefile'), 'utf8')).toMatch(/^VERSION = 4\nPATCHLEVEL = 18\nSUBLEVEL = 0\n/m)
  }, 10 * 60_000)

  it('a second fetch, from --kernel-source-file, is a cache hit: the same tree, nothing unpacked', async () => {
    const lines: string[] = []
    const first = join(cacheDir, 'kernel-trees', srpm.sha256)
    const before = statSync(join(first, 'Makefile')).ino
    const got = await fetchKernelSource(spec({url: 'https://vault.example.invalid/8.1.1911/BaseOS/Source/SPackages/kernel-4.18.0-147.5.1.el8_1.src.rpm'}), io({localFile: srpm.file}, lines), rhelModule)
    expect(got.tree).toBe(first)
    expect(statSync(join(got.tree, 'Makefile')).ino).toBe(before)
    expect(lines.filter((l) => /unpacking/.test(l))).toEqual([])
  })

  it('refuses a source RPM whose sha256 is not the pin, downloaded or given, and one with no pin before any work', async () => {
    const wrong = '0'.repeat(64)
    const given = await refusal(fetchKernelSource(spec({sha256: wrong}), io({localFile: srpm.file}), rhelModule))
    expect(given.message).toBe(`--kernel-source-file ${srpm.file}: sha256 ${srpm.sha256} is not the pinned ${wrong} (recipe.kernel.source.sha256, for ${pathToFileURL(srpm.file).href})`)
    const fresh = join(dir, 'fresh-cache')
    const downloaded = await refusal(fetchKernelSource(spec({sha256: wrong}), io({cacheDir: fresh}), rhelModule))
    expect(downloaded.message).toContain(`has sha256 ${srpm.sha256}, not the pinned ${wrong}`)
    expect(existsSync(join(fresh, 'kernel-trees'))).toBe(false)
    const unpinned = spec({sha256: null})
    const early = (() => {
      try {
        requireSourceInputs(unpinned, srpm.file, rhelModule)
      } catch (e) {
        return e
      }
    })()
    expect(early).toBeInstanceOf(InputError)
    expect((early as InputError).message).toBe(`recipe.kernel.source is the source RPM ${pathToFileURL(srpm.file).href}, with no sha256`)
    expect((early as InputError).hint).toMatch(/^pin it: set recipe.kernel.source.sha256 to the sha256sum of that .src.rpm/)
    expect((await refusal(fetchKernelSource(unpinned, io({localFile: srpm.file}), rhelModule))).message).toContain('with no sha256')
  })

  it('config base distro reads the non-debug x86_64 config from the SRPM, or the one the recipe names, also with no tree unpacked', async () => {
    const dest = join(dir, 'distro.config')
    expect(await distroConfig(spec(), {cacheDir, work: mkdtempSync(join(dir, 'work-'))}, dest)).toBe(`${EL8_SRPM} kernel-x86_64.config`)
    expect(readFileSync(dest, 'utf8')).toBe(srpm.configs['kernel-x86_64.config'])
    expect(readFileSync(dest, 'utf8')).toMatch(/^# cvm-image test config: kernel-x86_64.config\n/)
    // a cache with no tree and no kept configs: the configs come out of the SRPM given on the command line
    const fresh = join(dir, 'configs-only')
    const t = Date.now()
    const picked = await distroConfig(spec({config: 'kernel-x86_64-debug.config', url: 'https://vault.example.invalid/kernel.src.rpm'}), {cacheDir: fresh, work: mkdtempSync(join(dir, 'work-')), localFile: srpm.file}, dest)
    console.log(`configs alone out of the SRPM: ${seconds(t)}`)
    expect(picked).toBe('kernel.src.rpm kernel-x86_64-debug.config')
    expect(readFileSync(dest, 'utf8')).toBe(srpm.configs['kernel-x86_64-debug.config'])
    expect(existsSync(join(fresh, 'kernel-trees', srpm.sha256))).toBe(false)
    const missing = await refusal(distroConfig(spec({config: 'kernel-ppc64le.config'}), {cacheDir, work: mkdtempSync(join(dir, 'work-'))}, dest))
    expect(missing.message).toBe(`${EL8_SRPM} has no kernel-ppc64le.config (recipe.kernel.source.config)`)
    expect(missing.details).toEqual([`  configs in ${EL8_SRPM}: kernel-aarch64.config, kernel-x86_64-debug.config, kernel-x86_64.config`])
  })
})

describe('kernel source: source RPMs that are not a kernel tree', () => {
  /** a small real SRPM with these sources, and its source spec pinned to it */
  async function small(name: string, sources: Record<string, {file: string} | {text: string}>): Promise<{source: KernelSourceSpec; file: string}> {
    const file = await buildSrpm(join(dir, name), {version: '4.18.0', release: '1', sources})
    return {source: {kind: 'srpm', url: `https://example.invalid/${name}.src.rpm`, sha256: await sha256File(file)}, file}
  }
  /** a kernel-shaped linux-*.tar.gz */
  async function tarball(name: string): Promise<{file: string}> {
    const top = name.replace(/\.tar\..*$/, '')
    mkdirSync(join(dir, 'tarballs', top), {recursive: true})
    writeFileSync(join(dir, 'tarballs', top, 'Makefile'), 'VERSION = 4\n')
    const file = join(dir, 'tarballs', name)
    await run('tar', ['-czf', file, '-C', join(dir, 'tarballs'), top])
    return {file}
  }
  const fetch = ({source, file}: {source: KernelSourceSpec; file: string}) => fetchKernelSource(source, io({cacheDir: join(dir, 'small-cache'), localFile: file}), rhelModule)

  it('refuses an SRPM with no linux tarball, naming what it holds', async () => {
    const s = await small('no-tarball', {'kernel-x86_64.config': {text: 'CONFIG_X=y\n'}, 'patch-4.18-rhel.patch': {text: '--- a\n+++ b\n'}})
    const e = await refusal(fetch(s))
    expect(e.message).toBe('no-tarball.src.rpm holds no kernel tarball linux-*.tar.{xz,gz,bz2,zst}, not one')
    expect(e.details).toEqual(['  its files: kernel-x86_64.config, kernel.spec, patch-4.18-rhel.patch'])
  })

  it('refuses an SRPM with two linux tarballs, naming both', async () => {
    const s = await small('two-tarballs', {'linux-4.18.0-1.tar.gz': await tarball('linux-4.18.0-1.tar.gz'), 'linux-4.18.0-2.tar.gz': await tarball('linux-4.18.0-2.tar.gz')})
    const e = await refusal(fetch(s))
    expect(e.message).toBe('two-tarballs.src.rpm holds 2 kernel tarballs (linux-4.18.0-1.tar.gz, linux-4.18.0-2.tar.gz), not one')
  })

  it('refuses a file that is not an RPM, saying so', async () => {
    const {file} = await tarball('linux-9.9.tar.gz')
    const e = await refusal(fetch({source: {kind: 'srpm', url: 'https://example.invalid/k.src.rpm', sha256: await sha256File(file)}, file}))
    expect(e.message).toMatch(new RegExp(`^${file.replace(/[.]/g, '\\.')} is not a readable RPM: `))
    expect(isCvmError(e)).toBe(true)
  })
})
