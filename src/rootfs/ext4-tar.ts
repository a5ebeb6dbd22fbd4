import {createWriteStream} from 'node:fs'
import {mkdir, rm} from 'node:fs/promises'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import type {Readable} from 'node:stream'

import tar, {type Header as TarHeader} from 'tar-stream'

type Header = Partial<TarHeader> & {name: string}

import {InputError, StageError} from '../errors.js'
import {BATCH, debugfsBatch, openDumped, parseListing, parseStat, readDumped, type Debugfs, type InodeInfo} from './debugfs.js'
import {installBinaryPax, XATTR_PREFIX, xattrString} from './tar-pax.js'
import {packEntry} from './transform.js'

installBinaryPax()

/**
 * An ext2/3/4 filesystem inside a disk image file, written as a rootfs tarball without root: debugfs
 * lists every directory and states every inode, dumps file contents in bounded batches into the work
 * directory, and the tarball is written from those, entry by entry.
 *
 * The tarball depends on the filesystem alone: entries sorted by path (bytes), numeric owners from
 * the inodes, modes, mtimes (whole seconds), hardlinks as tar links to the first name in that order,
 * device nodes and fifos, and extended attributes as SCHILY.xattr.* pax records (POSIX ACLs in the
 * form the kernel gives getxattr, as GNU tar records them). Sockets have no tar form and are left out.
 */
export interface Ext4ToTarOptions {
  /** a raw image file (its name without "?") */
  image: string
  /** byte offset of the filesystem in it */
  offset: number
  output: string
  /** scratch space: content batches and xattr values land here */
  work: string
  progress: (line: string) => void
  signal?: AbortSignal
  logFile?: string
}

export interface Ext4ToTarResult {
  /** tar entries, the root included */
  entries: number
  files: number
  /** content bytes written */
  bytes: number
  /** names written as tar hard links */
  hardlinks: number
  /** extended attributes carried */
  xattrs: number
  /** sockets left out (tar has no form for them) */
  sockets: string[]
}

const ROOT_INO = 2
/** a content batch stops at this many bytes (the dumped files wait in the work dir until written) */
const BATCH_BYTES = 256 * 1024 * 1024

const S_IFMT = 0o170000
/** file types by st_mode; sockets (0o140000) have none in tar */
const TYPES: Record<number, TarHeader['type'] | undefined> = {
  0o120000: 'symlink',
  0o100000: 'file',
  0o060000: 'block-device',
  0o040000: 'directory',
  0o020000: 'character-device',
  0o010000: 'fifo',
}

interface Node {
  /** canonical name: relative, no trailing slash, '' for the root */
  path: string
  /** the same name as UTF-8 bytes: the sort key */
  key: Buffer
  ino: number
  mode: number
}

export async function ext4ToTar(opts: Ext4ToTarOptions): Promise<Ext4ToTarResult> {
  const fs: Debugfs = {image: opts.image, offset: opts.offset, cwd: opts.work, logFile: opts.logFile, signal: opts.signal}
  const nodes = await walk(fs, opts.progress)
  nodes.sort((a, b) => Buffer.compare(a.key, b.key))

  const inos = [...new Set(nodes.map((n) => n.ino))]
  const inodes = new Map<number, InodeInfo>()
  for (let i = 0; i < inos.length; i += BATCH) {
    opts.progress(`reading inodes ${i}/${inos.length}`)
    const chunk = inos.slice(i, i + BATCH)
    const outs = await debugfsBatch(fs, chunk.map((ino) => `stat <${ino}>`), 'read the inodes of the root filesystem')
    chunk.forEach((ino, k) => inodes.set(ino, parseStat(outs[k], ino)))
  }
  const xattrs = await readXattrs(fs, [...inodes.values()].filter((i) => i.xattrs.length), opts.progress)

  // the first name of an inode in path order carries it; later names of a non-directory are its hardlinks
  const firstName = new Map<number, string>()
  const needsDump = new Set<number>()
  for (const n of nodes) {
    const type = TYPES[n.mode & S_IFMT]
    if (firstName.has(n.ino)) {
      if (type === 'directory') throw new InputError(`the disk's root filesystem has directory inode ${n.ino} under two names ("/${firstName.get(n.ino)}", "/${n.path}")`, {hint: 'run e2fsck on the image: it is damaged'})
      continue
    }
    firstName.set(n.ino, n.path)
    const info = inodes.get(n.ino)!
    if (type === 'file') needsDump.add(n.ino)
    if (type === 'symlink' && (info.fastLink === undefined || Buffer.byteLength(info.fastLink) !== info.size)) needsDump.add(n.ino)
  }

  const contentDir = join(opts.work, 'content')
  await mkdir(contentDir, {recursive: true})
  const pack = tar.pack({highWaterMark: 1 << 20})
  const written = pipeline(pack as unknown as Readable, createWriteStream(opts.output, {highWaterMark: 1 << 20}))
  written.catch(() => undefined)
  const writeFailure = written.then(() => new Promise<never>(() => undefined))
  writeFailure.catch(() => undefined)
  const put = (header: Header, body: Buffer | Readable) => Promise.race([packEntry(pack, header, body), writeFailure])

  const result: Ext4ToTarResult = {entries: 0, files: 0, bytes: 0, hardlinks: 0, xattrs: 0, sockets: []}
  const dumped = new Set<number>()
  const total = [...needsDump].reduce((s, ino) => s + inodes.get(ino)!.size, 0)
  const emitted = new Set<number>()
  try {
    for (let i = 0; i < nodes.length; i++) {
      const n = nodes[i]
      const info = inodes.get(n.ino)!
      const type = TYPES[n.mode & S_IFMT]
      if (type === undefined) {
        result.sockets.push(n.path)
        continue
      }
      const header: Header = {
        name: n.path === '' ? './' : type === 'directory' ? `${n.path}/` : n.path,
        type,
        mode: info.perm,
        uid: info.uid,
        gid: info.gid,
        uname: '',
        gname: '',
        mtime: new Date(info.mtime * 1000),
        size: 0,
      }
      if (emitted.has(n.ino)) {
        await put({...header, type: 'link', linkname: firstName.get(n.ino)!}, Buffer.alloc(0))
        result.hardlinks++
        result.entries++
        continue
      }
      emitted.add(n.ino)
      const pax: Record<string, string> = {}
      for (const x of xattrs.get(n.ino) ?? []) pax[XATTR_PREFIX + x.name] = xattrString(x.value)
      // ustar's octal owner fields end at 2097151: larger ids go in pax records
      if (info.uid > 0o7777777) pax.uid = String(info.uid)
      if (info.gid > 0o7777777) pax.gid = String(info.gid)
      if (Object.keys(pax).length) header.pax = pax
      result.xattrs += xattrs.get(n.ino)?.length ?? 0
      if (type === 'character-device' || type === 'block-device') {
        header.devmajor = info.devmajor ?? 0
        header.devminor = info.devminor ?? 0
      }
      if (needsDump.has(n.ino) && !dumped.has(n.ino)) {
        opts.progress(`writing files: ${Math.round(result.bytes / 2 ** 20)}/${Math.round(total / 2 ** 20)} MiB`)
        await dumpBatch(fs, nodes, i, inodes, needsDump, dumped, contentDir)
      }
      const content = join(contentDir, String(n.ino))
      if (type === 'symlink') {
        header.linkname = needsDump.has(n.ino) ? utf8(await readDumped(content, `symlink "/${n.path}"`), n.path, 'symlink target') : info.fastLink!
        if (Buffer.byteLength(header.linkname) !== info.size) throw new StageError(`symlink "/${n.path}" (inode ${n.ino}) reads back ${Buffer.byteLength(header.linkname)} bytes, its inode says ${info.size}`)
        await put(header, Buffer.alloc(0))
      } else if (type === 'file') {
        const fh = await openDumped(content, `file "/${n.path}"`)
        const got = (await fh.stat()).size
        if (got !== info.size) {
          await fh.close()
          throw new StageError(`debugfs dumped ${got} bytes of "/${n.path}" (inode ${n.ino}), its inode says ${info.size}`, {hint: 'run e2fsck on the image: it may be damaged'})
        }
        // the stream closes the handle when it ends
        await put({...header, size: info.size}, fh.createReadStream({highWaterMark: 1 << 20}))
        result.files++
        result.bytes += info.size
      } else {
        await put(header, Buffer.alloc(0))
      }
      if (needsDump.has(n.ino)) await rm(content, {force: true})
      result.entries++
    }
    pack.finalize()
    await written
  } catch (e) {
    pack.destroy()
    throw e
  } finally {
    await rm(contentDir, {recursive: true, force: true})
  }
  return result
}

/** Every name in the filesystem, breadth first: one debugfs run lists a whole level of directories. */
async function walk(fs: Debugfs, progress: (line: string) => void): Promise<Node[]> {
  const nodes: Node[] = [{path: '', key: Buffer.alloc(0), ino: ROOT_INO, mode: 0o040000}]
  const seenDirs = new Set<number>([ROOT_INO])
  let level: Node[] = [nodes[0]]
  for (let depth = 1; level.length; depth++) {
    progress(`listing directories: depth ${depth}, ${nodes.length} names so far`)
    const next: Node[] = []
    for (let i = 0; i < level.length; i += BATCH) {
      const dirs = level.slice(i, i + BATCH)
      const outs = await debugfsBatch(fs, dirs.map((d) => `ls -p <${d.ino}>`), 'list the root filesystem')
      dirs.forEach((dir, k) => {
        for (const e of parseListing(outs[k], dir.path)) {
          const path = dir.path ? `${dir.path}/${e.name}` : e.name
          // debugfs prints names as bytes; run() decodes them as UTF-8, which a pax path must be anyway
          if (path.includes('\uFFFD')) throw new InputError(`the disk's root filesystem has a name that is not UTF-8 under "/${dir.path}"`, {hint: 'rename it in the image, or export the root filesystem as a tarball and give it as a base of format tar'})
          const node = {path, key: Buffer.from(path), ino: e.ino, mode: e.mode}
          nodes.push(node)
          if ((e.mode & S_IFMT) === 0o040000) {
            if (seenDirs.has(e.ino)) throw new InputError(`the disk's root filesystem has directory inode ${e.ino} twice (at "/${path}")`, {hint: 'run e2fsck on the image: it is damaged'})
            seenDirs.add(e.ino)
            next.push(node)
          }
        }
      })
    }
    level = next
  }
  return nodes
}

/** Dumps the content of the next files to write (from nodes[from] on) until a batch is full. */
async function dumpBatch(fs: Debugfs, nodes: Node[], from: number, inodes: Map<number, InodeInfo>, needsDump: Set<number>, dumped: Set<number>, dir: string): Promise<void> {
  const batch: number[] = []
  let bytes = 0
  for (let i = from; i < nodes.length && batch.length < BATCH; i++) {
    const ino = nodes[i].ino
    if (!needsDump.has(ino) || dumped.has(ino) || batch.includes(ino)) continue
    const size = inodes.get(ino)!.size
    if (batch.length && bytes + size > BATCH_BYTES) break
    batch.push(ino)
    bytes += size
  }
  await debugfsBatch(fs, batch.map((ino) => `dump <${ino}> ${join('content', String(ino))}`), 'read files of the root filesystem')
  for (const ino of batch) dumped.add(ino)
}

interface Xattr {
  name: string
  value: Buffer
}

/** Reads the extended attributes of these inodes; values come raw (ea_get -r) and are checked against their stored length. */
async function readXattrs(fs: Debugfs, withXattrs: InodeInfo[], progress: (line: string) => void): Promise<Map<number, Xattr[]>> {
  const dir = join(fs.cwd, 'xattrs')
  await mkdir(dir, {recursive: true})
  const wanted: Array<{ino: number; name: string; length: number; file: string}> = []
  for (const info of withXattrs) {
    info.xattrs.forEach((x, k) => {
      // inline data lives in system.data: file content, not an attribute
      if (x.name === 'system.data') return
      if (!/^(security|trusted|user|system)\.[\x21-\x7e]+$/.test(x.name)) throw new InputError(`inode ${info.ino} has an extended attribute with an unsupported name "${x.name}"`)
      wanted.push({ino: info.ino, name: x.name, length: x.length, file: join('xattrs', `${info.ino}.${k}`)})
    })
  }
  const out = new Map<number, Xattr[]>()
  for (let i = 0; i < wanted.length; i += BATCH) {
    progress(`reading extended attributes ${i}/${wanted.length}`)
    const chunk = wanted.slice(i, i + BATCH)
    await debugfsBatch(fs, chunk.map((x) => `ea_get -r -f ${x.file} <${x.ino}> ${x.name}`), 'read extended attributes')
    for (const x of chunk) {
      const raw = await readDumped(join(fs.cwd, x.file), `extended attribute ${x.name} of inode ${x.ino}`).catch(() => undefined)
      if (!raw || raw.length !== x.length) throw new StageError(`extended attribute ${x.name} of inode ${x.ino} reads back ${raw?.length ?? 'no'} bytes, its inode says ${x.length}`)
      const value = x.name === 'system.posix_acl_access' || x.name === 'system.posix_acl_default' ? aclToXattr(raw, x.ino) : raw
      const list = out.get(x.ino) ?? []
      list.push({name: x.name, value})
      out.set(x.ino, list)
    }
  }
  for (const list of out.values()) list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  await rm(dir, {recursive: true, force: true})
  return out
}

const ACL_USER = 0x02
const ACL_GROUP = 0x08
const ACL_UNDEFINED_ID = 0xffffffff

/**
 * ext4 keeps a POSIX ACL in its own form (version 1; entries of 4 bytes, 8 for named users and groups);
 * getxattr gives, and GNU tar records, the generic form (version 2; every entry 8 bytes, with
 * ACL_UNDEFINED_ID where the entry names nobody). This is the kernel's conversion.
 */
export function aclToXattr(disk: Buffer, ino: number): Buffer {
  const bad = () => new InputError(`inode ${ino} has a damaged POSIX ACL`, {hint: 'run e2fsck on the image'})
  if (disk.length < 4 || disk.readUInt32LE(0) !== 1) throw bad()
  const entries: Buffer[] = [Buffer.from([2, 0, 0, 0])]
  for (let at = 4; at < disk.length; ) {
    if (at + 4 > disk.length) throw bad()
    const tag = disk.readUInt16LE(at)
    const named = tag === ACL_USER || tag === ACL_GROUP
    if (named && at + 8 > disk.length) throw bad()
    const e = Buffer.alloc(8)
    e.writeUInt16LE(tag, 0)
    e.writeUInt16LE(disk.readUInt16LE(at + 2), 2)
    e.writeUInt32LE(named ? disk.readUInt32LE(at + 4) : ACL_UNDEFINED_ID, 4)
    entries.push(e)
    at += named ? 8 : 4
  }
  return Buffer.concat(entries)
}

function utf8(bytes: Buffer, path: string, what: string): string {
  const s = bytes.toString('utf8')
  if (!Buffer.from(s).equals(bytes)) throw new InputError(`"/${path}" has a ${what} that is not UTF-8`, {hint: 'export the root filesystem as a tarball and give it as a base of format tar'})
  return s
}
