import {execFileSync} from 'node:child_process'
import {cpSync, mkdirSync, mkdtempSync, writeFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {capabilityProblems} from '../src/distro/index.js'
import type {StageResult} from '../src/pipeline/results.js'
import {stageEnv, type BuildContext} from '../src/pipeline/stage.js'
import {assembleStage} from '../src/pipeline/stages/assemble.js'
import {baseStage} from '../src/pipeline/stages/base.js'
import {projectDirs, RecipeStore} from '../src/recipe/load.js'
import {sha256File} from '../src/util/fsx.js'
import {diskRootFile, dnfReads, rootfsWithFiles, zypperLocks} from './helpers/package-managers.js'
import {buildUntil} from './helpers/pipeline.js'
import {repoRoot, sharedTestCache} from './helpers/paths.js'

/**
 * The RHEL and SUSE modules' kernel holds in a disk the real base and assemble stages build: a
 * RHEL-family and a SUSE-family recipe (each refused or accepted by the real recipe check) whose
 * base is a rootfs tarball with the distro's own dnf.conf and zypper locks, and the debian-12
 * kernel the shared test cache holds. The files are read back from the disk's ext4 with debugfs,
 * never mounted, and parsed by dnf's own parser (python3-dnf) and by zypper.
 */

const SECTOR = 512
const KERNEL = ['kernel', 'kernel-core', 'kernel-modules']
/** RHEL 8's dnf.conf, plus an exclude of the image's own that must survive */
const BASE_DNF_CONF = '[main]\ngpgcheck=1\ninstallonly_limit=3\nclean_requirements_on_remove=True\nbest=True\nskip_if_unavailable=False\nexclude=firefox\n'
const BASE_ZYPP_LOCKS = 'type: package\nmatch_type: exact\ncase_sensitive: on\nsolvable_name: sles-release\n'

let root: string
let work: string
let compile: StageResult<'compile'>
let debianBase: StageResult<'base'>
let baseTar: string

function fixtureRecipe(id: string, yaml: string) {
  writeFileSync(join(root, 'recipes', `${id}.yaml`), yaml)
  return new RecipeStore(projectDirs(root)).load(id)
}

/** the real base stage (image base, format tar, --base-file) and then the real assemble stage, in-process */
async function buildDisk(id: string, yaml: string): Promise<{disk: string; rootOffset: number}> {
  const recipe = fixtureRecipe(id, yaml)
  expect(capabilityProblems(recipe.recipe)).toEqual([])
  const cacheDir = join(work, `cache-${id}`)
  const ctx: BuildContext = {recipe, dirs: projectDirs(root), options: {baseFile: baseTar}, cacheDir}
  const io = (name: string) => {
    const out = join(work, id, name, 'out')
    const w = join(work, id, name, 'work')
    mkdirSync(out, {recursive: true})
    mkdirSync(w, {recursive: true})
    return {out, work: w, logFile: join(w, 'log'), progress: () => {}, log: () => {}, signal: new AbortController().signal}
  }
  const b = io('base')
  const baseMeta = await baseStage.run({...b, upstream: {}, env: stageEnv(ctx)}, await baseStage.inputs(ctx))
  const base: StageResult<'base'> = {stage: 'base', key: `fixture-${id}`, dir: b.out, meta: baseMeta}
  const a = io('assemble')
  await assembleStage.run({...a, upstream: {base, compile}, env: stageEnv(ctx)}, await assembleStage.inputs(ctx))
  const disk = join(a.out, 'disk.raw')
  const rootOffset = JSON.parse(execFileSync('sfdisk', ['-J', disk]).toString()).partitiontable.partitions[1].start * SECTOR
  return {disk, rootOffset}
}

const KERNEL_SECTION = `kernel:
  source: {kind: tarball, url: "https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.1.tar.xz", sha256: null}
`

beforeAll(async () => {
  // the debian-12 kernel and rootfs of the shared test cache (built here when no earlier test has)
  const r = await buildUntil('debian-12', 'compile')
  compile = r.results.compile!
  debianBase = r.results.base!
  root = mkdtempSync(join(sharedTestCache(), 'distro-holds-'))
  work = join(root, 'work')
  for (const d of ['recipes', 'kernels', 'templates']) cpSync(join(repoRoot, d), join(root, d), {recursive: true})
  // the Debian rootfs with the distro's own package manager configuration in it, as a RHEL or SUSE image has
  baseTar = join(root, 'rootfs-with-dnf-and-zypp.tar')
  await rootfsWithFiles(join(debianBase.dir, 'rootfs.tar'), baseTar, {'etc/dnf/dnf.conf': BASE_DNF_CONF, 'etc/zypp/locks': BASE_ZYPP_LOCKS})
}, 1_800_000)
afterAll(async () => {
  if (root) await rm(root, {recursive: true, force: true})
})

describe('kernel holds of the RHEL and SUSE modules, read back from a built disk', () => {
  it('rhel: dnf reads the disk\'s dnf.conf with the kernel packages excluded, the image\'s own options and exclude kept, and no apt pin', async () => {
    const sha = await sha256File(baseTar)
    const {disk, rootOffset} = await buildDisk('rhel-fixture', `extends: _rhel
name: RHEL-family fixture (a Debian rootfs with RHEL's dnf.conf)
status: buildable-here
distro: {family: rhel, release: "8.4", kernel: "6.1 (debian-12's)"}
base: {kind: image, url: "file:///fixture/rootfs.tar", sha256: "${sha}", format: tar}
${KERNEL_SECTION}image:
  remove: [etc/ssh/ssh_host_*]
`)
    const parsed = await dnfReads(diskRootFile(disk, '/etc/dnf/dnf.conf'), ['excludepkgs', 'gpgcheck', 'installonly_limit', 'best'])
    expect(parsed).toEqual({excludepkgs: ['firefox', ...KERNEL], gpgcheck: true, installonly_limit: 3, best: true})
    // the Debian module's pin is not written for a RHEL recipe
    const listed = execFileSync('debugfs', ['-R', 'ls -p /etc/apt/preferences.d', `${disk}?offset=${rootOffset}`], {stdio: ['ignore', 'pipe', 'ignore']}).toString()
    expect(listed).toMatch(/^\/\d+\/040755\/0\/0\/\.\//m) // the directory is there (Debian's), listed
    expect(listed).not.toContain('cvm-image-kernel')
    // the common guest files are there
    expect(diskRootFile(disk, '/etc/hostname')).toBe('cvm\n')
  }, 600_000)

  it('sles: zypper lists the disk\'s locks: the kernel package locked, the image\'s own lock kept', async () => {
    const sha = await sha256File(baseTar)
    const {disk} = await buildDisk('sles-fixture', `extends: _common
name: SUSE-family fixture (a Debian rootfs with zypper's locks)
status: buildable-here
distro: {family: sles, release: "15.2", kernel: "6.1 (debian-12's)"}
base: {kind: image, url: "file:///fixture/rootfs.tar", sha256: "${sha}", format: tar}
${KERNEL_SECTION}  line: "6.1"
  upstream_version: "6.1"
  sev_es: fixture
image:
  remove: [etc/ssh/ssh_host_*]
  kernel_hold: {method: zypper-lock, packages: [kernel-default]}
`)
    expect(await zypperLocks(diskRootFile(disk, '/etc/zypp/locks'))).toEqual(['kernel-default', 'sles-release'])
  }, 600_000)
})
