import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync} from 'node:fs'
import {mkdir, rm} from 'node:fs/promises'
import {join} from 'node:path'

import tar from 'tar-stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {baseStage} from '../src/pipeline/stages/base.js'
import {projectDirs} from '../src/recipe/load.js'
import {stageKey} from '../src/pipeline/plan.js'
import type {AssembleResult} from '../src/pipeline/results.js'
import type {StageResult} from '../src/pipeline/stage.js'
import {XATTR_PREFIX, xattrValue} from '../src/rootfs/tar-pax.js'
import {sha256} from '../src/util/fsx.js'
import {debianCloudKernel} from './helpers/kernel.js'
import {repoRoot, sharedTestCache} from './helpers/paths.js'
import {debian12Recipe} from './helpers/recipes.js'
import {ensureUnprivilegedUser, runStageAs, unprivilegedDir, type UnprivilegedUser} from './helpers/unprivileged.js'

/**
 * debian-12 base (real mmdebstrap) + a real kernel -> disk, built twice as an unprivileged user,
 * then read back with sfdisk -J, mtools and debugfs, never mounted. The second build runs base and
 * assemble cold in an empty cache of its own; only the kernel (not what reproducibility is about
 * here, and the costly part) is shared.
 */

const recipe = debian12Recipe()
const SECTOR = 512
let user: UnprivilegedUser
let cacheRoot: string
let base: StageResult
/** the base built again, cold, in an empty cache */
let coldBase: StageResult
let kernel: StageResult
let first: {meta: AssembleResult; out: string}
let second: {meta: AssembleResult; out: string}

/** test-only files, removed with the runs */
function scratch(): string {
  const d = join(cacheRoot, 'runs', `scratch-${process.pid}`)
  mkdirSync(d, {recursive: true})
  return d
}

function ctx() {
  return {recipe, dirs: projectDirs(repoRoot), options: {}, cacheDir: cacheRoot}
}

/** The base stage's output, built once as the unprivileged user (mmdebstrap --mode=unshare) and kept in the shared test cache. */
async function cachedBase(): Promise<StageResult<'base'>> {
  const key = stageKey(baseStage, await baseStage.inputs(ctx()), {})
  const dir = join(cacheRoot, 'base', key)
  if (existsSync(join(dir, 'result.json'))) return {stage: 'base', key, dir, meta: JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8'))}
  const tmp = join(cacheRoot, 'base', `${key}.tmp-${process.pid}`)
  await rm(tmp, {recursive: true, force: true})
  await mkdir(join(cacheRoot, 'base'), {recursive: true})
  const r = await runStageAs(user, {stage: 'base', recipe, root: tmp, cacheDir: cacheRoot})
  if (r.exitCode !== 0) throw new Error(`base stage failed as ${user.name}:\n${r.stderr.slice(-4000)}`)
  writeFileSync(join(r.out, 'result.json'), JSON.stringify(r.meta))
  renameSync(r.out, dir)
  await rm(tmp, {recursive: true, force: true})
  return {stage: 'base', key, dir, meta: r.meta!}
}

/** The base stage run as the unprivileged user in a new, empty cache: nothing of an earlier build is there to reuse. */
async function coldBaseIn(name: string): Promise<StageResult<'base'>> {
  const cacheDir = unprivilegedDir(join(cacheRoot, 'runs', `${name}-cache-${process.pid}`), user)
  const key = stageKey(baseStage, await baseStage.inputs(ctx()), {})
  const r = await runStageAs(user, {stage: 'base', recipe, root: join(cacheRoot, 'runs', `${name}-${process.pid}`), cacheDir})
  if (r.exitCode !== 0) throw new Error(`base stage failed as ${user.name}:\n${r.stderr.slice(-4000)}`)
  return {stage: 'base', key, dir: r.out, meta: r.meta!}
}

/** Entries (name, type, mode, owner, link, size, content digest) of one tarball that the other lacks or has otherwise. */
async function tarDifferences(a: string, b: string): Promise<string[]> {
  const listing = async (file: string) => {
    const extract = tar.extract()
    createReadStream(file).pipe(extract as unknown as NodeJS.WritableStream)
    const out = new Set<string>()
    for await (const e of extract) {
      const h = e.header
      const hash = createHash('sha256')
      for await (const c of e) hash.update(c as Buffer)
      out.add([h.name, h.type, h.mode.toString(8), h.uid, h.gid, h.mtime?.getTime(), h.linkname ?? '', h.size, hash.digest('hex')].join(' '))
    }
    return out
  }
  const [x, y] = [await listing(a), await listing(b)]
  return [...[...x].filter((l) => !y.has(l)).map((l) => `- ${l}`), ...[...y].filter((l) => !x.has(l)).map((l) => `+ ${l}`)]
}

async function assembleAs(name: string, from: StageResult) {
  const root = join(cacheRoot, 'runs', `${name}-${process.pid}`)
  await rm(root, {recursive: true, force: true})
  const r = await runStageAs(user, {stage: 'assemble', recipe, root, cacheDir: cacheRoot, upstream: {base: from, compile: kernel}})
  if (r.exitCode !== 0) throw new Error(`assemble failed as ${user.name}:\n${r.stderr.slice(-4000)}`)
  return {meta: r.meta!, out: r.out}
}

function debugfs(disk: string, offset: number, command: string): string {
  return execFileSync('debugfs', ['-R', command, `${disk}?offset=${offset}`], {stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 << 20}).toString()
}

/** One debugfs session running many `stat` commands; returns the output of each, by path. */
function statMany(disk: string, offset: number, paths: string[]): Map<string, string> {
  const script = paths.map((p) => `stat "/${p}"`).join('\n') + '\n'
  const outFile = join(scratch(), 'stat.script')
  writeFileSync(outFile, script)
  const out = execFileSync('debugfs', ['-f', outFile, `${disk}?offset=${offset}`], {stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 << 20}).toString()
  const parts = out.split(/^debugfs: stat "\/(.*)"$/m)
  const byPath = new Map<string, string>()
  for (let i = 1; i < parts.length; i += 2) byPath.set(parts[i], parts[i + 1])
  return byPath
}

/** A POSIX ACL xattr (version 2) as [tag, perm, id] with the id only where the tag has one (USER 0x02, GROUP 0x08). */
function aclEntries(value: Buffer): Array<[number, number, number | null]> {
  const out: Array<[number, number, number | null]> = []
  for (let at = 4; at + 8 <= value.length; at += 8) {
    const tag = value.readUInt16LE(at)
    out.push([tag, value.readUInt16LE(at + 2), tag === 0x02 || tag === 0x08 ? value.readUInt32LE(at + 4) : null])
  }
  return out
}

interface BaseEntry {
  name: string
  type: string
  mode: number
  uid: number
  gid: number
  linkname?: string | null
  devmajor?: number
  devminor?: number
  xattrs: Record<string, Buffer>
}

async function baseEntries(file: string): Promise<BaseEntry[]> {
  const extract = tar.extract()
  createReadStream(file).pipe(extract as unknown as NodeJS.WritableStream)
  const out: BaseEntry[] = []
  for await (const e of extract) {
    const h = e.header
    const xattrs: Record<string, Buffer> = {}
    for (const [k, v] of Object.entries((h.pax ?? {}) as Record<string, string>)) if (k.startsWith(XATTR_PREFIX)) xattrs[k.slice(XATTR_PREFIX.length)] = xattrValue(v)
    out.push({name: h.name.replace(/^\.\//, '').replace(/\/$/, ''), type: h.type, mode: h.mode, uid: h.uid, gid: h.gid, linkname: h.linkname, devmajor: h.devmajor, devminor: h.devminor, xattrs})
    e.resume()
  }
  return out
}

beforeAll(async () => {
  user = ensureUnprivilegedUser()
  cacheRoot = join(sharedTestCache(), 'assemble')
  await mkdir(cacheRoot, {recursive: true})
  execFileSync('chmod', ['a+rwx', cacheRoot])
  kernel = await debianCloudKernel(cacheRoot)
  base = await cachedBase()
  coldBase = await coldBaseIn('cold-base')
  first = await assembleAs('first', base)
  second = await assembleAs('second', coldBase)
})

afterAll(async () => {
  // two sparse 2 GiB disks per run: do not let them pile up in the shared cache
  await rm(join(cacheRoot, 'runs'), {recursive: true, force: true})
})

describe(`assemble debian-12 as an unprivileged user`, () => {
  it('ran without root', () => {
    expect(user.uid).not.toBe(0)
    expect(first.meta.diskSha256).toMatch(/^[0-9a-f]{64}$/)
  })

  it('two cold builds in two empty caches (base and assemble cold in each, the kernel shared) give byte-identical disks', async () => {
    const sha = (r: StageResult) => (r.meta as {sha256: string}).sha256
    // (a base cached by an earlier run may predate the mirror's last update: its package versions then differ as well)
    const differences = sha(base) === sha(coldBase) ? [] : await tarDifferences(join(base.dir, 'rootfs.tar'), join(coldBase.dir, 'rootfs.tar'))
    expect(differences.slice(0, 40), 'entries in which two mmdebstrap runs of the same recipe differ').toEqual([])
    expect(sha(coldBase)).toBe(sha(base))
    expect(second.meta.diskSha256).toBe(first.meta.diskSha256)
    expect(second.meta.ukiSha256).toBe(first.meta.ukiSha256)
    expect(sha256(readFileSync(join(second.out, 'uki.efi')))).toBe(first.meta.ukiSha256)
  })

  it('the GPT is what the recipe says: ESP then x86-64 root, by PARTUUID, size_gib', () => {
    const disk = join(first.out, 'disk.raw')
    const pt = JSON.parse(execFileSync('sfdisk', ['-J', disk]).toString()).partitiontable
    expect(pt.label).toBe('gpt')
    expect(pt.id.toLowerCase()).toBe(first.meta.diskGuid)
    expect(pt.partitions).toHaveLength(2)
    const [esp, root] = pt.partitions
    expect(esp.type).toBe('C12A7328-F81F-11D2-BA4B-00A0C93EC93B')
    expect(root.type).toBe('4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709')
    expect(root.uuid.toLowerCase()).toBe(first.meta.rootPartUuid)
    expect(esp.start).toBe(2048)
    expect(statSync(disk).size).toBe(recipe.recipe.image.size_gib * 1024 ** 3)
    const args = String(first.meta.cmdline).split(' ')
    expect(args[0]).toBe(`root=PARTUUID=${first.meta.rootPartUuid}`)
    expect(args.filter((a) => a === 'rw')).toHaveLength(1)
    for (const a of recipe.recipe.boot.cmdline.split(/\s+/).filter(Boolean)) expect(args).toContain(a)
  })

  it('the ESP holds the UKI at \\EFI\\BOOT\\BOOTX64.EFI, with the kernel, cmdline and os-release as sections', async () => {
    const disk = join(first.out, 'disk.raw')
    const pt = JSON.parse(execFileSync('sfdisk', ['-J', disk]).toString()).partitiontable
    const img = `${disk}@@${pt.partitions[0].start * SECTOR}`
    expect(execFileSync('mdir', ['-b', '-i', img, '::/EFI/BOOT']).toString()).toMatch(/BOOTX64\.EFI/)
    const copy = join(scratch(), 'esp-uki.efi')
    execFileSync('mcopy', ['-n', '-o', '-i', img, '::/EFI/BOOT/BOOTX64.EFI', copy])
    expect(sha256(readFileSync(copy))).toBe(first.meta.ukiSha256)
    const headers = execFileSync('objdump', ['-h', copy]).toString()
    for (const s of ['.osrel', '.cmdline', '.linux']) expect(headers).toContain(s)
    const section = (name: string) => {
      const f = `${copy}${name}`
      execFileSync('objcopy', ['-O', 'binary', `--only-section=${name}`, copy, f])
      return readFileSync(f)
    }
    expect(section('.cmdline').toString().replace(/\0+$/, '')).toBe(first.meta.cmdline)
    expect(section('.osrel').toString()).toMatch(/ID=debian/)
    const vmlinuz = readFileSync(join(kernel.dir, 'vmlinuz'))
    expect(section('.linux').subarray(0, vmlinuz.length).equals(vmlinuz)).toBe(true)
    await rm(copy, {force: true})
  })

  it('the root holds the CVM files the recipe asks for', () => {
    const disk = join(first.out, 'disk.raw')
    const off = JSON.parse(execFileSync('sfdisk', ['-J', disk]).toString()).partitiontable.partitions[1].start * SECTOR
    expect(debugfs(disk, off, 'cat /etc/fstab')).toMatch(new RegExp(`^PARTUUID=${first.meta.rootPartUuid}\\s+/\\s+ext4`, 'm'))
    expect(debugfs(disk, off, 'cat /etc/hostname')).toBe(`${recipe.recipe.image.hostname}\n`)
    expect(debugfs(disk, off, 'cat /etc/cloud/cloud.cfg.d/90-cvm-image.cfg')).toMatch(/datasource_list: \[NoCloud, None\]/)
    const pin = debugfs(disk, off, 'cat /etc/apt/preferences.d/cvm-image-kernel')
    expect(pin).toMatch(/^Package: linux-image-\*\nPin: release \*\nPin-Priority: -1$/m)
    const build = JSON.parse(debugfs(disk, off, 'cat /etc/cvm-image/build.json'))
    expect(build.kernel.release).toBe((kernel.meta as {release: string}).release)
    expect(build.boot.cmdline).toBe(first.meta.cmdline)
    expect(build.base.sha256).toBe((base.meta as {sha256: string}).sha256)
    const release = (kernel.meta as {release: string}).release
    // the modules land under usr/lib (bookworm's lib is a link to it), every one of them
    const fsModules = readdirSync(join(kernel.dir, 'modules/lib/modules', release, 'kernel/fs'))
    const listed = debugfs(disk, off, `ls -p /usr/lib/modules/${release}/kernel/fs`)
    for (const m of fsModules) expect(listed, m).toContain(`/${m}/`)
    expect(debugfs(disk, off, 'stat /lib')).toMatch(/Type: symlink/)
    expect(debugfs(disk, off, 'ls /etc/ssh')).not.toMatch(/ssh_host_/)
    expect(debugfs(disk, off, 'stat /etc/systemd/system/multi-user.target.wants/systemd-networkd.service')).toMatch(/Type: symlink/)
    expect(debugfs(disk, off, 'stat /boot/efi')).toMatch(/Type: directory/)
    expect(debugfs(disk, off, 'cat /etc/default/locale')).toMatch(/^LANG=C\.UTF-8$/m)
    expect(debugfs(disk, off, 'cat /etc/cloud/cloud.cfg.d/90-cvm-image.cfg')).toMatch(/^locale: C\.UTF-8$/m)
    expect(debugfs(disk, off, 'stat /etc/systemd/system/sysinit.target.wants/systemd-network-generator.service')).toMatch(/Type: symlink/)
  })

  it('owners, modes, device nodes, hardlinks, symlinks and xattrs of the base survive', async () => {
    const disk = join(first.out, 'disk.raw')
    const off = JSON.parse(execFileSync('sfdisk', ['-J', disk]).toString()).partitiontable.partitions[1].start * SECTOR
    const entries = (await baseEntries(join(base.dir, 'rootfs.tar'))).filter((e) => e.name && !/^etc\/(ssh\/ssh_host_|hostname$|fstab$)/.test(e.name))
    const devices = entries.filter((e) => e.type === 'character-device' || e.type === 'block-device')
    const links = entries.filter((e) => e.type === 'link')
    const special = entries.filter((e) => e.mode & 0o7000 || e.uid !== 0 || e.gid !== 0)
    const symlinks = entries.filter((e) => e.type === 'symlink').slice(0, 200)
    const withXattrs = entries.filter((e) => Object.keys(e.xattrs).length)
    const sample = entries.filter((e) => e.type === 'file').filter((_, i) => i % 97 === 0)
    expect(devices.length).toBeGreaterThan(3)
    expect(special.length).toBeGreaterThan(3)
    const checked = [...devices, ...links, ...special, ...symlinks, ...sample]
    const linkTargets = links.map((l) => l.linkname!.replace(/^\.\//, ''))
    const stats = statMany(disk, off, [...new Set([...checked.map((e) => e.name), ...linkTargets])])
    const field = (s: string, re: RegExp) => re.exec(s)?.[1]
    for (const e of checked) {
      const s = stats.get(e.name)
      expect(s, e.name).toBeDefined()
      expect(Number.parseInt(field(s!, /Mode:\s+(\d+)/)!, 8), `${e.name} mode`).toBe(e.type === 'symlink' ? 0o777 : e.mode & 0o7777)
      expect(Number(field(s!, /User:\s+(\d+)/)), `${e.name} uid`).toBe(e.uid)
      expect(Number(field(s!, /Group:\s+(\d+)/)), `${e.name} gid`).toBe(e.gid)
      if (e.type === 'character-device' || e.type === 'block-device') {
        expect(s!, e.name).toMatch(e.type === 'character-device' ? /Type: character special/ : /Type: block special/)
        const [major, minor] = field(s!, /Device major\/minor number: (\d+:\d+)/)!.split(':').map(Number)
        expect([major, minor], `${e.name} device`).toEqual([e.devmajor, e.devminor])
      }
      if (e.type === 'symlink') expect(field(s!, /Fast link dest: "(.*)"/) ?? '', `${e.name} target`).toBe(e.linkname!.length < 60 ? e.linkname : '')
      if (e.type === 'link') {
        const target = stats.get(e.linkname!.replace(/^\.\//, ''))!
        expect(field(s!, /^Inode: (\d+)/), `${e.name} is a hardlink of ${e.linkname}`).toBe(field(target, /^Inode: (\d+)/))
      }
    }
    for (const e of withXattrs) {
      const list = debugfs(disk, off, `ea_list "/${e.name}"`)
      for (const [key, value] of Object.entries(e.xattrs)) {
        expect(list, `${e.name} ${key}`).toContain(key)
        const valueFile = join(scratch(), 'xattr')
        debugfs(disk, off, `ea_get -f ${valueFile} "/${e.name}" ${key}`)
        if (key.startsWith('system.posix_acl_')) {
          // ext4 stores ACLs in its own format; read back, entries without a qualifier carry id 0 instead of -1
          expect(aclEntries(readFileSync(valueFile)), `${e.name} ${key}`).toEqual(aclEntries(value))
        } else {
          expect(readFileSync(valueFile).equals(value), `${e.name} ${key} byte for byte`).toBe(true)
        }
      }
    }
  })
})
