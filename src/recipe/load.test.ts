import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {InputError} from '../errors.js'
import {formatProblem, projectDirs, RecipeStore} from './load.js'

let root: string

const parent = `abstract: true
source_date_epoch: 1735689600
kernel:
  localversion: -cvm
  config:
    base: lean
    features: [sev, nvme]
image:
  size_gib: 2
  kernel_hold: {method: apt-preferences, packages: [linux-image-*]}
`

const child = `extends: _parent
name: Test distro
status: buildable-here
distro: {family: debian, release: "12", kernel: "6.1"}
base:
  kind: mmdebstrap
  suite: bookworm
  mirror: http://deb.debian.org/debian
kernel:
  line: "6.1"
  upstream_version: "6.1"
  source: {kind: debian-package, package: linux-source-6.1, suite: bookworm, mirror: http://deb.debian.org/debian}
  sev_es: mainline since 5.10
`

function write(rel: string, text: string) {
  const p = join(root, rel)
  mkdirSync(join(p, '..'), {recursive: true})
  writeFileSync(p, text)
}

function problemsOf(id: string): string[] {
  const r = new RecipeStore(projectDirs(root)).tryLoad(id)
  if (!('problems' in r)) throw new Error(`expected problems for ${id}`)
  return r.problems.map((p) => formatProblem(p).replace(root + '/', ''))
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'cvm-recipe-'))
  write('kernels/6.1/series.yaml', 'patches: []\n')
  write('kernels/features/sev.yaml', 'name: sev\n')
  write('kernels/features/nvme.yaml', 'name: nvme\n')
  write('recipes/_parent.yaml', parent)
})
afterEach(() => rmSync(root, {recursive: true, force: true}))

describe('RecipeStore', () => {
  it('merges a recipe over the one it extends, maps key by key, lists replaced', () => {
    write('recipes/good.yaml', child + 'image:\n  size_gib: 8\n')
    const {recipe, files} = new RecipeStore(projectDirs(root)).load('good')
    expect(recipe.image.size_gib).toBe(8)
    expect(recipe.image.kernel_hold.method).toBe('apt-preferences') // from the parent
    expect(recipe.kernel.config.features).toEqual(['sev', 'nvme'])
    expect(recipe.kernel.localversion).toBe('-cvm')
    expect(recipe.base.kind === 'mmdebstrap' && recipe.base.variant).toBe('minbase') // a default
    expect(files.map((f) => f.replace(root + '/', ''))).toEqual(['recipes/good.yaml', 'recipes/_parent.yaml'])
  })

  it('names an unknown key at its line and column', () => {
    write('recipes/bad.yaml', child + 'imagee:\n  size_gib: 3\n')
    expect(problemsOf('bad')).toEqual(['recipes/bad.yaml:14:1: unknown key "imagee" (remove it or fix its spelling; see the recipe format in README.md)'])
  })

  it('names a wrong type where the value is', () => {
    write('recipes/bad.yaml', child.replace('status: buildable-here', 'status: buildable-here\nsource_date_epoch: soon'))
    expect(problemsOf('bad')).toEqual(['recipes/bad.yaml:4:20: "source_date_epoch" must be a number (change its value)'])
  })

  it('names a missing field at the map that lacks it', () => {
    write('recipes/bad.yaml', child.replace('  sev_es: mainline since 5.10\n', ''))
    expect(problemsOf('bad')).toEqual(['recipes/bad.yaml:9:1: missing field "kernel.sev_es" (add it: a string)'])
  })

  it('names a bad sha256 and an unknown enum value', () => {
    write('recipes/bad.yaml', child.replace(/base:\n[^]*?(?=kernel:)/, 'base:\n  kind: image\n  url: https://example.org/a.tar.xz\n  sha256: abc123\n  format: tar.xz\n').replace('status: buildable-here', 'status: maybe'))
    expect(problemsOf('bad')).toEqual([
      'recipes/bad.yaml:3:9: "status" must be one of "buildable-here", "needs-source-access", "needs-subscription" (change its value)',
      'recipes/bad.yaml:8:11: "base.sha256" must be a sha256: 64 lowercase hex digits (change its value)',
    ])
  })

  it('names an unknown kernel line and an unknown feature, in the file that sets them', () => {
    write('recipes/bad.yaml', child.replace('line: "6.1"', 'line: "5.99"'))
    write('recipes/_parent.yaml', parent.replace('[sev, nvme]', '[sev, nvme, warp-drive]'))
    expect(problemsOf('bad')).toEqual([
      'recipes/_parent.yaml:7:27: unknown kernel feature "warp-drive" (use one of nvme, sev)',
      'recipes/bad.yaml:10:9: unknown kernel line "5.99": no kernels/5.99/series.yaml (use one of 6.1, or add that series)',
    ])
  })

  it('reports every problem at once, and load() throws them as one InputError', () => {
    write('recipes/bad.yaml', child.replace('status: buildable-here', 'status: 7').replace('suite: bookworm\n  mirror', 'suite: bookworm\n  colour: blue\n  mirror') + 'extra: 1\n')
    expect(problemsOf('bad')).toHaveLength(3)
    try {
      new RecipeStore(projectDirs(root)).load('bad')
      expect.unreachable()
    } catch (e) {
      expect(e).toBeInstanceOf(InputError)
      expect((e as InputError).exitCode).toBe(2)
      expect((e as InputError).details).toHaveLength(3)
    }
  })

  it('refuses at load what the distro family\'s module cannot build, at the field that asks it', () => {
    // an apt hold (the parent's), an mmdebstrap base and a Debian source package in a RHEL recipe
    write('recipes/rh.yaml', child.replace('family: debian', 'family: rhel'))
    expect(problemsOf('rh')).toEqual([
      'recipes/_parent.yaml:10:25: the rhel module holds the kernel with dnf-exclude or none, not "apt-preferences"',
      'recipes/rh.yaml:6:9: the rhel module cannot build a "mmdebstrap" base (it builds image)',
      'recipes/rh.yaml:12:18: the rhel module cannot fetch a "debian-package" kernel source (it takes tarball, archive, git, srpm)',
    ])
    // an mmdebstrap base for SUSE, a distro config from a tarball for Debian, a family with no module
    write('recipes/su.yaml', child.replace('family: debian', 'family: sles').replace('source: {kind: debian-package, package: linux-source-6.1, suite: bookworm, mirror: http://deb.debian.org/debian}', 'source: {kind: tarball, url: https://example.org/l.tar.xz, sha256: null}') + 'image:\n  kernel_hold: {method: zypper-lock, packages: [kernel-default]}\n')
    expect(problemsOf('su')).toEqual(['recipes/su.yaml:6:9: the sles module cannot build a "mmdebstrap" base (it builds image)'])
    write('recipes/dc.yaml', child.replace('source: {kind: debian-package, package: linux-source-6.1, suite: bookworm, mirror: http://deb.debian.org/debian}', 'source: {kind: tarball, url: https://example.org/l.tar.xz, sha256: null}') + '  config: {base: distro, features: [sev]}\n')
    expect(problemsOf('dc')).toEqual([
      'recipes/dc.yaml:14:18: config base "distro" needs debian\'s own kernel config, and a tarball source has none here (it comes with debian-package (linux-config-<line> of the same suite, cloud-amd64 flavour); or use lean or defconfig)',
    ])
    write('recipes/co.yaml', child.replace('family: debian', 'family: cos'))
    expect(problemsOf('co')).toEqual([expect.stringMatching(/^recipes\/co\.yaml:4:18: cvm-image has no module for the distro family "cos" \(src\/distro\/ has debian, ubuntu, rhel, sles\)/)])
    // the recipe parsed: listings can still show it; load() refuses it as unbuildable, with every field
    const store = new RecipeStore(projectDirs(root))
    const r = store.tryLoad('rh')
    expect('problems' in r && r.recipe?.distro.family).toBe('rhel')
    expect(() => store.load('rh')).toThrow(/recipe rh asks for what cvm-image cannot build/)
  })

  it('a hold method that needs packages refuses an empty list at load', () => {
    write('recipes/bad.yaml', child + 'image:\n  kernel_hold: {method: apt-preferences, packages: []}\n')
    expect(problemsOf('bad')).toEqual(['recipes/bad.yaml:15:42: kernel_hold method apt-preferences needs the kernel packages to hold (list them, e.g. [linux-image-*, linux-headers-*])'])
  })

  it('refuses an extends cycle and an unknown parent', () => {
    write('recipes/a.yaml', 'extends: b\n')
    write('recipes/b.yaml', 'extends: a\n')
    expect(problemsOf('a')[0]).toMatch(/^recipes\/b\.yaml:1:10: "extends: a" makes a cycle \(a -> b -> a\)/)
    write('recipes/c.yaml', 'extends: nowhere\n')
    expect(problemsOf('c')[0]).toMatch(/^recipes\/c\.yaml:1:10: "extends: nowhere" names no recipe/)
  })

  it('reports YAML syntax errors with their position', () => {
    write('recipes/bad.yaml', 'name: x\nstatus: [unclosed\n')
    expect(problemsOf('bad')[0]).toMatch(/^recipes\/bad\.yaml:\d+:\d+: YAML syntax: /)
  })

  it('refuses root= in boot.cmdline at load time, where it is (assemble adds root=PARTUUID=)', () => {
    write('recipes/bad.yaml', child + 'boot:\n  cmdline: console=ttyS0 root=/dev/sda1\n')
    expect(problemsOf('bad')).toEqual(['recipes/bad.yaml:15:12: "boot.cmdline" sets "root=/dev/sda1", but assemble adds root=PARTUUID=<the root partition> (remove root=)'])
  })

  it('refuses a command line longer than x86 keeps, counting what assemble adds', () => {
    // "root=PARTUUID=<36> rw " is 54 bytes: 1993 bytes of the recipe's own make 2047, the most the kernel keeps
    const fits = 'a'.repeat(1993)
    write('recipes/ok.yaml', child + `boot:\n  cmdline: ${fits}\n`)
    expect(new RecipeStore(projectDirs(root)).load('ok').recipe.boot.cmdline).toBe(fits)
    write('recipes/bad.yaml', child + `boot:\n  cmdline: ${fits}b\n`)
    expect(problemsOf('bad')).toEqual([
      'recipes/bad.yaml:15:12: "boot.cmdline" gives a kernel command line of 2048 bytes with the root=PARTUUID=... and rw assemble adds; x86 keeps 2047 (COMMAND_LINE_SIZE 2048 with its NUL) (shorten it by 1 byte)',
    ])
  })

  it('refuses a publish.version that is not one directory name', () => {
    for (const [v, why] of [
      ['"."', 'must not be "." or ".."'],
      ['".."', 'must not be "." or ".."'],
      ['a/b', 'must be letters, digits and . _ - only (it names a directory: no /)'],
    ]) {
      write('recipes/bad.yaml', child + `publish:\n  version: ${v}\n`)
      expect(problemsOf('bad'), v).toEqual([expect.stringMatching(new RegExp(`^recipes/bad\\.yaml:15:12: "publish\\.version" ${why.replace(/[.()"/]/g, '\\$&')}`))])
    }
    write('recipes/ok.yaml', child + 'publish:\n  version: 1.0.2-rc.1\n')
    expect(new RecipeStore(projectDirs(root)).load('ok').recipe.publish.version).toBe('1.0.2-rc.1')
  })

  it('refuses an unknown recipe id with the known ones', () => {
    expect(() => new RecipeStore(projectDirs(root)).load('nope')).toThrow(/no recipe named "nope"/)
  })
})
