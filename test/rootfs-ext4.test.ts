import {execFileSync} from 'node:child_process'
import {createWriteStream, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {mkdtemp, rm} from 'node:fs/promises'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'

import tar, {type Header} from 'tar-stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {transformRootfs} from '../src/rootfs/transform.js'
import {xattrString} from '../src/rootfs/tar-pax.js'
import {repoRoot, sharedTestCache} from './helpers/paths.js'
import {ensureUnprivilegedUser, runAs, unprivilegedDir, type UnprivilegedUser} from './helpers/unprivileged.js'

/**
 * The awkward-but-legal parts of a root filesystem (device nodes, fifos, setuid files, foreign
 * owners, hardlinks, long names, absolute symlinks, binary xattrs) go through the transform and
 * into ext4 made by an unprivileged user: they land in the image exactly, and nothing (no device
 * node, no file) lands on the host outside the work area.
 */

const EPOCH = 1_735_689_600
const CAPABILITY = Buffer.from('0100000200200000000000000000000000000000', 'hex')
const AWKWARD = Buffer.from([0x00, 0x80, 0xff, 0xc3, 0x28, 0x0a, 0x3d, 0x20])
const deep = Array.from({length: 8}, (_, i) => `${String(i).repeat(3)}-${'d'.repeat(150)}`).join('/')

let user: UnprivilegedUser
let dir: string
let image: string
let outsideBefore: string[]

function debugfs(command: string): string {
  return execFileSync('debugfs', ['-R', command, image], {stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 16 << 20}).toString()
}

beforeAll(async () => {
  user = ensureUnprivilegedUser()
  const parent = join(sharedTestCache(), 'rootfs-ext4')
  unprivilegedDir(parent, user)
  dir = await mkdtemp(join(parent, 'case-'))
  execFileSync('chown', [`${user.uid}:${user.gid}`, dir])
  outsideBefore = readdirSync(parent).sort()

  const entries: Array<Partial<Header> & {name: string; data?: Buffer}> = [
    {name: './', type: 'directory', mode: 0o755},
    {name: 'dev/', type: 'directory', mode: 0o755},
    {name: 'dev/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3},
    {name: 'dev/sda', type: 'block-device', mode: 0o660, gid: 6, devmajor: 8, devminor: 0},
    {name: 'dev/initctl', type: 'fifo', mode: 0o600},
    {name: 'usr/', type: 'directory', mode: 0o755},
    {name: 'usr/bin/', type: 'directory', mode: 0o755},
    {name: 'usr/bin/sudo', mode: 0o4755, data: Buffer.from('sudo')},
    {name: 'usr/bin/ping', mode: 0o755, data: Buffer.from('ping'), pax: {'SCHILY.xattr.security.capability': xattrString(CAPABILITY), 'SCHILY.xattr.user.awkward': xattrString(AWKWARD)}},
    {name: 'usr/bin/perl', mode: 0o755, data: Buffer.from('perl')},
    {name: 'usr/bin/perl5.36.0', type: 'link', linkname: 'usr/bin/perl'},
    {name: 'home/', type: 'directory', mode: 0o755},
    {name: 'home/someone/', type: 'directory', mode: 0o700, uid: 1234, gid: 5678},
    {name: 'etc/', type: 'directory', mode: 0o755},
    {name: 'etc/localtime', type: 'symlink', linkname: '/usr/share/zoneinfo/Etc/UTC'},
    {name: 'etc/shadow-link', type: 'symlink', linkname: '/etc/shadow'},
    // a file the image replaces (etc/hostname), with two more names
    {name: 'etc/hostname', mode: 0o644, data: Buffer.from('debian\n')},
    {name: 'etc/hostname.hard', type: 'link', linkname: 'etc/hostname'},
    {name: 'etc/hostname.hard2', type: 'link', linkname: 'etc/hostname'},
    {name: 'srv/', type: 'directory', mode: 0o755},
  ]
  const parts = deep.split('/')
  for (let i = 1; i <= parts.length; i++) entries.push({name: `srv/${parts.slice(0, i).join('/')}/`, type: 'directory', mode: 0o755})
  entries.push({name: `srv/${deep}/${'f'.repeat(255)}`, data: Buffer.from('deep'), uid: 7, gid: 9})

  const input = join(dir, 'in.tar')
  const pack = tar.pack()
  const done = pipeline(pack as unknown as NodeJS.ReadableStream, createWriteStream(input))
  for (const {data, ...h} of entries) {
    await new Promise<void>((resolve, reject) => {
      const header = {mode: 0o644, uid: 0, gid: 0, mtime: new Date(EPOCH * 1000), ...h}
      if (data) pack.entry({...header, size: data.length}, data, (e) => (e ? reject(e) : resolve()))
      else pack.entry(header, (e) => (e ? reject(e) : resolve())).end(undefined)
    })
  }
  pack.finalize()
  await done

  const rootfs = join(dir, 'rootfs.tar')
  const additions = [{kind: 'file', name: 'etc/hostname', mode: 0o644, content: Buffer.from('cvm\n')}] as const
  const t = await transformRootfs({input, output: rootfs, remove: [], additions, allowAbsoluteSymlinks: true, sourceDateEpoch: EPOCH})
  execFileSync('chmod', ['a+r', rootfs])
  // the image and the work area belong to the unprivileged user; nothing else is writable for it
  image = join(unprivilegedDir(join(dir, 'img'), user), 'root.img')
  const work = unprivilegedDir(join(dir, 'work'), user)
  const specFile = join(dir, 'spec.json')
  writeFileSync(
    specFile,
    JSON.stringify({tarball: rootfs, image, sizeBytes: 64 << 20, uuid: '11111111-2222-4333-8444-555555555555', hashSeed: '11111111-2222-4333-8444-555555555556', sourceDateEpoch: EPOCH, work, xattrs: t.xattrs.map((x) => ({name: x.name, key: x.key, hex: x.value.toString('hex')}))}),
  )
  const r = await runAs(user, process.execPath, ['--import', 'tsx', join(repoRoot, 'test/helpers/make-ext4.ts'), specFile], {cwd: repoRoot, reject: false})
  if (r.exitCode !== 0) throw new Error(`makeRootFilesystem failed as ${user.name}: ${r.stderr}`)
})

afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

describe('ext4 from an awkward rootfs, made without root', () => {
  it('ran as an unprivileged user and left nothing outside its work area', () => {
    expect(user.uid).not.toBe(0)
    expect(readdirSync(join(dir, '..')).sort().filter((f) => !outsideBefore.includes(f))).toEqual([])
    // the unpacked tree is gone, and no real device node was ever made on the host
    expect(execFileSync('find', [dir, '-type', 'b', '-o', '-type', 'c', '-o', '-type', 'p']).toString()).toBe('')
    expect(readdirSync(join(dir, 'work'))).not.toContain('root-tree')
  })

  it('device nodes and fifos are in the image with their numbers', () => {
    expect(debugfs('stat /dev/null')).toMatch(/Type: character special/)
    expect(debugfs('stat /dev/null')).toMatch(/Device major\/minor number: 01:03/)
    expect(debugfs('stat /dev/sda')).toMatch(/Type: block special[\s\S]*Group:\s+6[\s\S]*Device major\/minor number: 08:00/)
    expect(debugfs('stat /dev/initctl')).toMatch(/Type: FIFO\s+Mode:\s+0600/)
  })

  it('owners, setuid bits and hardlinks are kept', () => {
    expect(debugfs('stat /usr/bin/sudo')).toMatch(/Mode:\s+04755[\s\S]*User:\s+0\s+Group:\s+0/)
    expect(debugfs('stat /home/someone')).toMatch(/Mode:\s+0700[\s\S]*User:\s+1234\s+Group:\s+5678/)
    const ino = (p: string) => /^Inode: (\d+)/.exec(debugfs(`stat ${p}`))![1]
    expect(ino('/usr/bin/perl5.36.0')).toBe(ino('/usr/bin/perl'))
    expect(debugfs('stat /usr/bin/perl')).toMatch(/Links: 2/)
  })

  it('a file the image replaces is new under its name; its other names keep the base\'s content, still linked to each other', () => {
    const ino = (p: string) => /^Inode: (\d+)/.exec(debugfs(`stat ${p}`))![1]
    expect(debugfs('cat /etc/hostname')).toBe('cvm\n')
    expect(debugfs('stat /etc/hostname')).toMatch(/Links: 1/)
    expect(debugfs('cat /etc/hostname.hard')).toBe('debian\n')
    expect(ino('/etc/hostname.hard2')).toBe(ino('/etc/hostname.hard'))
    expect(debugfs('stat /etc/hostname.hard')).toMatch(/Links: 2/)
  })

  it('long names and absolute symlinks are kept', () => {
    expect(debugfs(`cat "/srv/${deep}/${'f'.repeat(255)}"`)).toBe('deep')
    expect(debugfs(`stat "/srv/${deep}/${'f'.repeat(255)}"`)).toMatch(/User:\s+7\s+Group:\s+9/)
    expect(debugfs('stat /etc/localtime')).toMatch(/Fast link dest: "\/usr\/share\/zoneinfo\/Etc\/UTC"/)
    expect(debugfs('stat /etc/shadow-link')).toMatch(/Fast link dest: "\/etc\/shadow"/)
  })

  it('binary xattrs arrive byte for byte', () => {
    for (const [key, value] of [['security.capability', CAPABILITY], ['user.awkward', AWKWARD]] as const) {
      const f = join(dir, `xattr-${key}`)
      debugfs(`ea_get -f ${f} /usr/bin/ping ${key}`)
      expect(readFileSync(f).equals(value), key).toBe(true)
    }
  })

  it('every inode time is SOURCE_DATE_EPOCH', () => {
    const s = debugfs(`stat "/srv/${deep}"`)
    for (const t of ['ctime', 'atime', 'mtime', 'crtime']) expect(s).toMatch(new RegExp(`${t}: 0x${EPOCH.toString(16)}:00000000`))
  })
})
