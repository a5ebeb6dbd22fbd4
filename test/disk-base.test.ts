import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {cpSync, createReadStream, createWriteStream, existsSync, writeFileSync} from 'node:fs'
import {chmod, lstat, mkdir, mkdtemp, readdir, readlink, rm, stat, truncate, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {pathToFileURL} from 'node:url'

import tar from 'tar-stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {makeRootFilesystem} from '../src/disk/ext4.js'
import {ROOT_X86_64_TYPE} from '../src/disk/gpt.js'
import {findRootPartition, LINUX_DATA_TYPE} from '../src/disk/root-partition.js'
import {InputError} from '../src/errors.js'
import {rawToQcow2} from '../src/formats/qcow2.js'
import {StageCache} from '../src/pipeline/cache.js'
import {runStages} from '../src/pipeline/run.js'
import {STAGES} from '../src/pipeline/stages/index.js'
import {projectDirs, RecipeStore} from '../src/recipe/load.js'
import {diskToRootfs} from '../src/rootfs/disk-base.js'
import {installBinaryPax, xattrValue} from '../src/rootfs/tar-pax.js'
import {run} from '../src/util/exec.js'
import {sha256File} from '../src/util/fsx.js'
import {makeGptDisk} from './helpers/disk-fixture.js'
import {repoRoot, sharedTestCache} from './helpers/paths.js'
import {ensureUnprivilegedUser, runStageAs, unprivilegedDir} from './helpers/unprivileged.js'
import {debian12Disk} from './helpers/validate-disk.js'

installBinaryPax()

/**
 * Disk image bases read without root (src/rootfs/disk-base.ts): partition selection on disks sfdisk
 * made; a small ext4 with every kind of entry (capabilities, hardlinks, devices, a fifo, long
 * symlinks) and the published debian-12 disk as qcow2 and raw, each checked entry by entry against
 * the kernel's view of the same filesystem (a read-only loop mount, as root); the debian-12 fork
 * through the base stage (as an unprivileged user) and assemble; and disks whose root is not ext4.
 */

const isRoot = process.getuid?.() === 0
/** the oracle loop-mounts the filesystem: root and a loop device */
const canMount = isRoot && existsSync('/dev/loop-control')
const NO_MOUNT = isRoot ? 'skipped: no /dev/loop-control for the loop-mount oracle' : 'skipped: the loop-mount oracle needs root'
const MiB = 1024 * 1024
const progress = () => undefined
let dir: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cvm-diskbase-'))
  // the unprivileged user reads the disks here
  await chmod(dir, 0o755)
})
afterAll(async () => {
  if (dir) await rm(dir, {recursive: true, force: true})
})

async function sfdisk(disk: string, sizeMiB: number, script: string): Promise<string> {
  await writeFile(disk, '')
  await truncate(disk, sizeMiB * MiB)
  await run('sfdisk', ['-q', '--no-reread', '--no-tell-kernel', disk], {input: script, what: 'partition the test disk'})
  return disk
}

/** Copies a filesystem image into a disk file at a byte offset. */
async function place(image: string, disk: string, offset: number): Promise<void> {
  await pipeline(createReadStream(image), createWriteStream(disk, {flags: 'r+', start: offset}))
}

describe('finding the root partition', () => {
  it('picks the largest Linux filesystem partition of a GPT without a root type (makeGptDisk: ESP + Linux data)', async () => {
    const disk = await makeGptDisk(join(dir, 'gpt.raw'))
    const root = await findRootPartition(disk.path, disk.size)
    expect(root).toMatchObject({partition: 2, offset: 206848 * 512, where: 'GPT partition 2 (Linux filesystem)'})
  })

  it('prefers the x86-64 root type over a larger Linux data partition', async () => {
    const disk = await sfdisk(join(dir, 'typed.raw'), 64, `label: gpt\nstart=2048, size=20480, type=${LINUX_DATA_TYPE}\nstart=22528, size=4096, type=${ROOT_X86_64_TYPE}\nstart=26624, size=40000, type=${LINUX_DATA_TYPE}\n`)
    expect(await findRootPartition(disk, 64 * MiB)).toMatchObject({partition: 2, offset: 22528 * 512, size: 4096 * 512, where: 'GPT partition 2 (Linux root x86-64)'})
  })

  it('reads an MBR: the largest type-83 partition', async () => {
    const disk = await sfdisk(join(dir, 'mbr.raw'), 64, 'label: dos\nstart=2048, size=8192, type=c\nstart=10240, size=4096, type=83\nstart=14336, size=30000, type=83\n')
    expect(await findRootPartition(disk, 64 * MiB)).toMatchObject({partition: 3, offset: 14336 * 512, where: 'MBR partition 3 (Linux filesystem)'})
  })

  it('takes a disk with no partition table as one filesystem', async () => {
    const disk = join(dir, 'bare.raw')
    await writeFile(disk, '')
    await truncate(disk, 8 * MiB)
    expect(await findRootPartition(disk, 8 * MiB)).toEqual({partition: null, offset: 0, size: 8 * MiB, where: 'the whole disk (no partition table)'})
  })

  it('refuses a disk with no Linux partition, naming what it has', async () => {
    const disk = await sfdisk(join(dir, 'esp-only.raw'), 16, 'label: gpt\nstart=2048, size=8192, type=U\n')
    const err = await findRootPartition(disk, 16 * MiB).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InputError)
    expect((err as InputError).message).toBe(`${disk} has no Linux root partition: its GPT holds partition 1 (type C12A7328-F81F-11D2-BA4B-00A0C93EC93B)`)
  })
})

/** One entry as compared: everything the tarball must carry. */
interface Entry {
  type: string
  mode: number
  uid: number
  gid: number
  mtime: number
  size?: number
  sha256?: string
  target?: string
  /** the first name (in path order) of the hardlink group, for names of an inode with several */
  link?: string
  dev?: string
  xattrs?: Record<string, string>
}

/** The tarball as a map of canonical name -> entry, hardlinks resolved to their group's first name. */
async function readTarball(file: string): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>()
  const extract = tar.extract()
  const reading = pipeline(createReadStream(file), extract as unknown as NodeJS.WritableStream)
  const names: string[] = []
  for await (const e of extract) {
    const h = e.header
    const name = h.name.replace(/^\.\/?/, '').replace(/\/$/, '')
    names.push(name)
    const pax = (h.pax ?? {}) as Record<string, string>
    const xattrs = Object.fromEntries(Object.entries(pax).filter(([k]) => k.startsWith('SCHILY.xattr.')).map(([k, v]) => [k.slice('SCHILY.xattr.'.length), xattrValue(v).toString('hex')]))
    const entry: Entry = {type: h.type === 'link' ? out.get(h.linkname!)!.type : h.type!, mode: h.mode!, uid: h.uid!, gid: h.gid!, mtime: h.mtime!.getTime() / 1000}
    if (Object.keys(xattrs).length) entry.xattrs = xattrs
    if (h.type === 'file') {
      const hash = createHash('sha256')
      for await (const c of e) hash.update(c as Buffer)
      Object.assign(entry, {size: h.size, sha256: hash.digest('hex')})
    } else {
      e.resume()
    }
    if (h.type === 'symlink') entry.target = h.linkname!
    if (h.type === 'character-device' || h.type === 'block-device') entry.dev = `${h.devmajor}:${h.devminor}`
    if (h.type === 'link') {
      const first = out.get(h.linkname!)!
      first.link = h.linkname!
      Object.assign(entry, {...first, link: h.linkname!})
    }
    out.set(name, entry)
  }
  await reading
  // the writer's contract: sorted by path bytes, each name once
  const sorted = [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
  expect(names).toEqual(sorted)
  expect(new Set(names).size).toBe(names.length)
  return out
}

const TYPE_OF: Array<[(s: import('node:fs').Stats) => boolean, string]> = [
  [(s) => s.isDirectory(), 'directory'], [(s) => s.isFile(), 'file'], [(s) => s.isSymbolicLink(), 'symlink'],
  [(s) => s.isCharacterDevice(), 'character-device'], [(s) => s.isBlockDevice(), 'block-device'], [(s) => s.isFIFO(), 'fifo'],
]

/** The oracle: the same filesystem as the kernel shows it, mounted read-only from a loop device. */
async function readMounted(disk: string, offset: number, size: number): Promise<Map<string, Entry>> {
  const mnt = join(dir, `mnt-${Math.random().toString(36).slice(2)}`)
  await mkdir(mnt)
  // not through run(): as root it gives each child a mount namespace of its own, where a mount ends with the child
  execFileSync('mount', ['-o', `ro,loop,noload,offset=${offset},sizelimit=${size}`, disk, mnt])
  try {
    const out = new Map<string, Entry>()
    const byInode = new Map<number, string>()
    const walk = async (rel: string) => {
      const full = rel ? join(mnt, rel) : mnt
      const s = await lstat(full)
      const type = TYPE_OF.find(([f]) => f(s))![1]
      const entry: Entry = {type, mode: s.mode & 0o7777, uid: s.uid, gid: s.gid, mtime: Math.floor(s.mtimeMs / 1000)}
      if (type === 'file') entry.size = s.size
      if (type === 'file') entry.sha256 = await sha256File(full)
      if (type === 'symlink') entry.target = await readlink(full)
      if (type === 'character-device' || type === 'block-device') entry.dev = `${Math.floor(s.rdev / 256) & 0xfff}:${(s.rdev & 0xff) | ((s.rdev >> 12) & ~0xff)}`
      if (type !== 'directory' && s.nlink > 1) {
        // names are visited in path order, so the first one seen is the group's first name
        if (!byInode.has(s.ino)) byInode.set(s.ino, rel)
        entry.link = byInode.get(s.ino)
      }
      out.set(rel, entry)
      if (type === 'directory') {
        const names = (await readdir(full)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
        for (const n of names) await walk(rel ? `${rel}/${n}` : n)
      }
    }
    await walk('')
    // xattrs of every inode, in one pass (getfattr names only the files that have some)
    const r = await run('getfattr', ['--recursive', '--physical', '--no-dereference', '--absolute-names', '--dump', '--match=-', '--encoding=hex', mnt], {what: 'read xattrs', reject: false})
    if (r.exitCode !== 0) console.log(`getfattr: ${r.stderr.slice(0, 300)}`)
    let current: Entry | undefined
    for (const line of r.stdout.split('\n')) {
      const file = /^# file: (.*)$/.exec(line)
      if (file) current = out.get(file[1] === mnt ? '' : file[1].slice(mnt.length + 1))
      const x = /^([^=]+)=0x([0-9a-f]*)$/.exec(line)
      if (x && current) current.xattrs = {...current.xattrs, [x[1]]: x[2]}
    }
    return out
  } finally {
    execFileSync('umount', [mnt])
  }
}

/** JSON with keys sorted at every level, so two entries compare by content alone */
function canonical(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v)
  return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`
}

/** The tarball against the oracle: the same names, and each entry the same in every field. */
function compare(got: Map<string, Entry>, want: Map<string, Entry>): void {
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort())
  const differ = [...want].filter(([name, w]) => canonical(got.get(name)) !== canonical(w))
  expect(differ.slice(0, 5).map(([name, w]) => ({name, want: w, got: got.get(name)}))).toEqual([])
}

const ORACLE = canMount ? 'against a read-only loop mount of the same filesystem' : `against expectations only (${NO_MOUNT})`

describe('a small ext4 with every kind of entry', () => {
  let disk: string
  const CAP = Buffer.from('0100000200200000000000000000000000000000', 'hex')
  const ACL = Buffer.from('0200000001000700ffffffff04000500ffffffff080005003000000010000500ffffffff20000500ffffffff', 'hex')

  beforeAll(async () => {
    // the rootfs as a tarball, made by the project's own ext4 writer (as assemble makes its root)
    const pack = tar.pack()
    const t = new Date(1_700_000_000 * 1000)
    const add = (h: Partial<tar.Header> & {name: string}, body?: Buffer) => (body ? pack.entry({mtime: t, uid: 0, gid: 0, mode: 0o644, ...h}, body) : pack.entry({mtime: t, uid: 0, gid: 0, mode: 0o644, ...h}))
    add({name: './', type: 'directory', mode: 0o755})
    add({name: 'usr/', type: 'directory', mode: 0o755})
    add({name: 'usr/bin/', type: 'directory', mode: 0o755})
    add({name: 'usr/bin/ping', mode: 0o755}, Buffer.from('#!/bin/sh\necho ping\n'))
    add({name: 'usr/bin/su', mode: 0o4755, gid: 5}, Buffer.from('setuid'))
    add({name: 'usr/bin/a-hard', mode: 0o640, uid: 1234, gid: 5678}, Buffer.from('shared content'))
    add({name: 'usr/bin/z-hard', type: 'link', linkname: 'usr/bin/a-hard'})
    add({name: 'usr/bin/big', mode: 0o600}, Buffer.alloc(3 * MiB + 17, 7))
    add({name: 'usr/bin/empty'}, Buffer.alloc(0))
    add({name: 'usr/bin/short', type: 'symlink', linkname: 'ping', mode: 0o777})
    add({name: 'usr/bin/long', type: 'symlink', linkname: `../${'x'.repeat(120)}/target`, mode: 0o777})
    add({name: 'usr/bin/Főtanúsítvány', mode: 0o644}, Buffer.from('utf-8 name'))
    add({name: 'dev/', type: 'directory', mode: 0o755})
    add({name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666})
    add({name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0, mode: 0o660, gid: 6})
    add({name: 'dev/fifo', type: 'fifo', mode: 0o600})
    add({name: 'var/', type: 'directory', mode: 0o2755})
    pack.finalize()
    const tarball = join(dir, 'small.tar')
    await pipeline(pack, createWriteStream(tarball))
    const image = join(dir, 'small.ext4')
    const work = join(dir, 'small-work')
    await mkdir(work)
    await makeRootFilesystem({
      tarball, image, sizeBytes: 32 * MiB, uuid: '0b4b6d8e-3e2c-4bb0-9f3b-6d2c1b7f0a11', hashSeed: '5f0c1b38-8d5c-4f55-b0f5-9f6e2a1d7c01', label: 'root', sourceDateEpoch: 1_700_000_000, work,
      xattrs: [{name: 'usr/bin/ping', key: 'security.capability', value: CAP}, {name: 'var', key: 'system.posix_acl_access', value: ACL}, {name: 'usr/bin/big', key: 'user.note', value: Buffer.from('hello')}],
    })
    disk = await sfdisk(join(dir, 'small.raw'), 40, `label: gpt\nstart=2048, size=${(32 * MiB) / 512}, type=${ROOT_X86_64_TYPE}\n`)
    await place(image, disk, MiB)
  })

  it(`carries every entry, owner, mode, time, link, device and xattr (${ORACLE})`, async () => {
    const out = join(dir, 'small-out.tar')
    const work = join(dir, 'w1')
    await mkdir(work)
    const r = await diskToRootfs(disk, 'raw', out, work, {progress})
    expect(r).toMatchObject({where: 'GPT partition 1 (Linux root x86-64)', hardlinks: 1, xattrs: 3, sockets: []})
    const got = await readTarball(out)
    expect(got.get('usr/bin/ping')).toMatchObject({mode: 0o755, xattrs: {'security.capability': CAP.toString('hex')}})
    expect(got.get('var')).toMatchObject({mode: 0o2755, xattrs: {'system.posix_acl_access': ACL.toString('hex')}})
    expect(got.get('usr/bin/su')).toMatchObject({mode: 0o4755, gid: 5})
    expect(got.get('usr/bin/z-hard')).toMatchObject({link: 'usr/bin/a-hard', uid: 1234, gid: 5678, mode: 0o640, sha256: createHash('sha256').update('shared content').digest('hex')})
    expect(got.get('usr/bin/long')!.target).toBe(`../${'x'.repeat(120)}/target`)
    expect(got.get('dev/sda')).toMatchObject({type: 'block-device', dev: '8:0', gid: 6})
    expect(got.get('dev/fifo')).toMatchObject({type: 'fifo', mode: 0o600})
    expect(got.get('usr/bin/big')).toMatchObject({size: 3 * MiB + 17, mtime: 1_700_000_000})
    // work leaves nothing behind: the raw link, content batches and xattr values are gone
    expect(await readdir(work)).toEqual(['debugfs.cmds'])
    if (canMount) compare(got, await readMounted(disk, MiB, 32 * MiB))
  })

  it('gives the same bytes from the disk as vmdk as from the raw', async () => {
    const vmdk = join(dir, 'small.vmdk')
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', disk, vmdk])
    const out = join(dir, 'small-vmdk.tar')
    await diskToRootfs(vmdk, 'vmdk', out, await mkdtemp(join(dir, 'vmdk-work-')), {progress})
    expect(await sha256File(out)).toBe(await sha256File(join(dir, 'small-out.tar')))
  })
})

const HINT = 'export the root filesystem as a tarball where you have root or libguestfs (e.g. `virt-tar-out -a disk.qcow2 / rootfs.tar`), then build a recipe whose base is that tarball: `base: {kind: image, format: tar, url: <where it is>, sha256: <its sha256>}`, or sha256: null with --base-file rootfs.tar'

describe('a disk whose root is not ext2/3/4', () => {
  it.skipIf(!existsSync('/usr/sbin/mkfs.xfs'))(`is refused with what was found and what to do: xfs on the whole disk, as qcow2${existsSync('/usr/sbin/mkfs.xfs') ? '' : ' (skipped: mkfs.xfs missing, apt-get install xfsprogs)'}`, async () => {
    const image = join(dir, 'root.xfs')
    await writeFile(image, '')
    await truncate(image, 320 * MiB)
    await run('mkfs.xfs', ['-q', image])
    const qcow2 = join(dir, 'xfs.qcow2')
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', image, qcow2])
    const work = join(dir, 'xfs-work')
    await mkdir(work)
    const err = await diskToRootfs(qcow2, 'qcow2', join(dir, 'xfs.tar'), work, {progress}).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InputError)
    expect((err as InputError).message).toBe(`the qcow2 base ${qcow2}: its root, the whole disk (no partition table), is xfs; cvm-image reads only ext2/3/4 root filesystems from disk images (without root, with debugfs)`)
    expect((err as InputError).hint).toBe(HINT)
    expect(await readdir(work)).toEqual([])
  })

  it('is refused with what was found: vfat in GPT partition 2', async () => {
    const disk = await sfdisk(join(dir, 'fat.raw'), 64, `label: gpt\nstart=2048, size=8192, type=U\nstart=10240, size=100000, type=${LINUX_DATA_TYPE}\n`)
    await run('mkfs.vfat', ['--offset', '10240', '-F', '32', disk, String(100000 / 2)])
    const err = await diskToRootfs(disk, 'raw', join(dir, 'fat.tar'), await mkdtemp(join(dir, 'fat-work-')), {progress}).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InputError)
    expect((err as InputError).message).toMatch(/its root, GPT partition 2 \(Linux filesystem\), is vfat; cvm-image reads only ext2\/3\/4/)
  })
})

describe('the published debian-12 disk, as qcow2 and raw', () => {
  let raw: string
  let qcow2: string
  const tarballs: Record<string, string> = {}
  const seconds: Record<string, number> = {}

  beforeAll(async () => {
    raw = (await debian12Disk()).disk
    // the publish step's own conversion
    qcow2 = join(dir, 'debian-12.qcow2')
    await rawToQcow2(raw, qcow2)
    await chmod(qcow2, 0o644)
    for (const [format, file] of [['qcow2', qcow2], ['raw', raw]] as const) {
      const work = join(dir, `deb-${format}`)
      await mkdir(work)
      const t = Date.now()
      const r = await diskToRootfs(file, format, join(dir, `deb-${format}.tar`), work, {progress})
      seconds[format] = (Date.now() - t) / 1000
      console.log(`read the debian-12 ${format} disk in ${seconds[format]} s: ${JSON.stringify({...r, sockets: r.sockets.length})}`)
      tarballs[format] = join(dir, `deb-${format}.tar`)
    }
  }, 900_000)

  it('gives the same tarball bytes from the qcow2 as from the raw (the tarball depends on the filesystem alone)', async () => {
    expect(await sha256File(tarballs.qcow2)).toBe(await sha256File(tarballs.raw))
  })

  it.skipIf(!canMount)(`matches the kernel's view of the root partition entry by entry (${canMount ? 'read-only loop mount' : NO_MOUNT})`, async () => {
    const got = await readTarball(tarballs.qcow2)
    const root = await findRootPartition(raw, (await stat(raw)).size)
    const want = await readMounted(raw, root.offset, root.size)
    compare(got, want)
    expect(got.size).toBeGreaterThan(10_000)
    expect(got.get('etc/os-release')).toMatchObject({type: 'symlink', target: '../usr/lib/os-release'})
  }, 600_000)

  it('builds through the base stage as an unprivileged user (qcow2 and raw via --base-file), giving the same rootfs.tar', async () => {
    const user = ensureUnprivilegedUser()
    const rawCopy = join(dir, 'debian-12.raw')
    await run('cp', ['--sparse=always', raw, rawCopy])
    await chmod(rawCopy, 0o644)
    for (const [format, file] of [['qcow2', qcow2], ['raw', rawCopy]] as const) {
      const recipe = forkRecipe(format, file, await sha256File(file))
      const r = await runStageAs(user, {stage: 'base', recipe: recipe.loaded, root: join(dir, `stage-${format}`), cacheDir: unprivilegedDir(join(dir, `cache-${format}`), user), options: {baseFile: file}})
      expect(r.stderr).not.toMatch(/Error/)
      expect(r.exitCode).toBe(0)
      expect((r.meta as {sha256: string}).sha256).toBe(await sha256File(tarballs.raw))
    }
  }, 600_000)

  it('a recipe extending debian-12 with the qcow2 as its base builds through base (forced) and assemble (kernel stages from the shared cache)', async () => {
    const sha = await sha256File(qcow2)
    const {loaded, dirs} = forkRecipe('qcow2', qcow2, sha)
    const t = Date.now()
    const result = await runStages({recipe: loaded, dirs, options: {jobs: 2}, cacheDir: sharedTestCache()}, new StageCache(sharedTestCache()), STAGES, {until: 'assemble', renderer: 'silent', force: ['base']})
    // base really ran (the qcow2, hence the cache key, is the same every run); assemble is a cache hit after the first run
    expect(result.results.base!.meta).toMatchObject({source: expect.stringContaining('(GPT partition 2 (Linux root x86-64))')})
    console.log(`fork built to assemble in ${(Date.now() - t) / 1000} s`)
    const a = result.results.assemble!
    const disk = join(a.dir, 'disk.raw')
    const root = await findRootPartition(disk, (await stat(disk)).size)
    const fs = `${disk}?offset=${root.offset}`
    // the original's userland, and what assemble writes
    const ls = await run('debugfs', ['-R', 'stat /usr/sbin/sshd', fs])
    expect(ls.stdout).toMatch(/Type: regular/)
    const osRelease = await run('debugfs', ['-R', 'cat /usr/lib/os-release', fs])
    expect(osRelease.stdout).toMatch(/^ID=debian$/m)
    const build = await run('debugfs', ['-R', 'cat /etc/cvm-image/build.json', fs])
    expect(build.stdout).toContain('debian-12-fork')
  }, 1_200_000)
})

/** recipes/ copied to a temp dir with debian-12-fork.yaml: extends debian-12, its base the given disk. */
function forkRecipe(format: 'qcow2' | 'raw', file: string, sha256: string) {
  const recipesDir = join(dir, `recipes-${format}`)
  cpSync(join(repoRoot, 'recipes'), recipesDir, {recursive: true})
  writeFileSync(join(recipesDir, 'debian-12-fork.yaml'), `extends: debian-12\nbase:\n  kind: image\n  format: ${format}\n  url: ${pathToFileURL(file).href}\n  sha256: ${sha256}\n`)
  return {
    get dirs() {
      return {...projectDirs(repoRoot), recipes: recipesDir}
    },
    get loaded() {
      return new RecipeStore({...projectDirs(repoRoot), recipes: recipesDir}).load('debian-12-fork')
    },
  }
}
