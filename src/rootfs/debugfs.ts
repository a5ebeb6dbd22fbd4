import {constants} from 'node:fs'
import {open, writeFile, type FileHandle} from 'node:fs/promises'
import {join} from 'node:path'

import {InputError, StageError} from '../errors.js'
import {runConfined} from '../util/sandbox.js'

/**
 * e2fsprogs' debugfs as a reader of an ext2/3/4 filesystem inside a disk image file, without root:
 * it opens the file read-only at a byte offset (`image?offset=N`, e2fsprogs' unix I/O option), runs a
 * batch of commands from a file and prints each command's output after an echo of the command.
 */
export interface Debugfs {
  /** the image file (seen inside the sandbox under a fixed name, so a "?" in it is no option) */
  image: string
  offset: number
  /** where command files are written and relative output paths land */
  cwd: string
  logFile?: string
  signal?: AbortSignal
}

/** One batch bounded so debugfs' output stays well under what run() buffers. */
export const BATCH = 2000

/** Where debugfs sees the image and its work dir inside the sandbox. */
const INSIDE_IMAGE = '/in/disk'
const INSIDE_WORK = '/work'

/**
 * Runs commands in one debugfs process; returns each command's output, in order. debugfs parses a
 * filesystem a base image brings, so it runs confined (util/sandbox.ts): it sees the image
 * read-only and the work dir its dumps land in, nothing else of the host.
 */
export async function debugfsBatch(fs: Debugfs, commands: readonly string[], what: string): Promise<string[]> {
  await writeFile(join(fs.cwd, 'debugfs.cmds'), commands.join('\n') + '\n')
  const r = await runConfined(
    'debugfs',
    ['-f', `${INSIDE_WORK}/debugfs.cmds`, `${INSIDE_IMAGE}?offset=${fs.offset}`],
    {readOnly: [{host: fs.image, inside: INSIDE_IMAGE}], writable: [{host: fs.cwd, inside: INSIDE_WORK}], chdir: INSIDE_WORK, env: {DEBUGFS_PAGER: '__none__', PAGER: '__none__'}},
    {what, signal: fs.signal, logFile: fs.logFile},
  )
  if (/Bad magic number in super-block|while trying to open|Filesystem not open/.test(r.stderr)) {
    throw new InputError(`debugfs cannot open the filesystem at byte ${fs.offset} of ${fs.image}: ${r.stderr.trim().split('\n').slice(0, 3).join(' ').replaceAll(INSIDE_IMAGE, fs.image)}`, {
      hint: 'the disk or its root filesystem is damaged: download the image again',
    })
  }
  if (r.exitCode !== 0) throw new StageError(`${what}: debugfs exited with ${r.exitCode}`, {details: r.stderr.split('\n').slice(-5)})
  // each command's output follows the echo "debugfs: <command>"
  const outputs: string[] = []
  for (const line of r.stdout.split('\n')) {
    if (outputs.length < commands.length && line === `debugfs: ${commands[outputs.length]}`) {
      outputs.push('')
    } else if (outputs.length) {
      outputs[outputs.length - 1] += `${line}\n`
    }
  }
  if (outputs.length !== commands.length) throw new StageError(`${what}: debugfs answered ${outputs.length} of ${commands.length} commands`, {details: r.stderr.split('\n').slice(-5)})
  return outputs
}

/**
 * Opens a file debugfs wrote, as itself: never through a symlink (O_NOFOLLOW) and only a regular
 * file. debugfs runs confined, but what it leaves in its work dir is read by the host: a debugfs
 * that a hostile filesystem took over could leave a link to a host file there instead of a dump.
 */
export async function openDumped(path: string, what: string): Promise<FileHandle> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW).catch((e: NodeJS.ErrnoException) => {
    throw new StageError(`${what}: debugfs left no file to read at ${path} (${e.code === 'ELOOP' ? 'a symlink, refused' : (e.code ?? e.message)})`)
  })
  if (!(await fh.stat()).isFile()) {
    await fh.close()
    throw new StageError(`${what}: debugfs left something other than a file at ${path}, refused`)
  }
  return fh
}

/** The bytes of a file debugfs wrote (openDumped). */
export async function readDumped(path: string, what: string): Promise<Buffer> {
  const fh = await openDumped(path, what)
  try {
    return await fh.readFile()
  } finally {
    await fh.close()
  }
}

/** One name in a directory, as `ls -p` prints it: /inode/mode/uid/gid/name/size/ */
export interface ListedEntry {
  name: string
  ino: number
  /** st_mode: type and permission bits */
  mode: number
}

/** Parses `ls -p` of one directory, without ".", ".." and unused slots. */
export function parseListing(text: string, dir: string): ListedEntry[] {
  const out: ListedEntry[] = []
  for (const line of text.split('\n')) {
    if (!line) continue
    const m = /^\/(\d+)\/([0-7]+)\/\d+\/\d+\/(.*)\/\d*\/$/.exec(line)
    if (!m) {
      throw new InputError(`directory "/${dir}" of the disk's root filesystem has a name cvm-image cannot read (a newline in it?): ${JSON.stringify(line)}`, {
        hint: 'export the root filesystem as a tarball and give it as a base of format tar',
      })
    }
    // inode 0 is an unused slot (lost+found's preallocated blocks are full of them)
    if (m[3] === '.' || m[3] === '..' || m[1] === '0') continue
    out.push({ino: Number(m[1]), mode: Number.parseInt(m[2], 8), name: m[3]})
  }
  return out
}

/** What `stat <ino>` says of an inode, as far as a tarball needs it. */
export interface InodeInfo {
  ino: number
  /** permission bits, setuid/setgid/sticky included */
  perm: number
  uid: number
  gid: number
  size: number
  links: number
  /** seconds since the epoch */
  mtime: number
  devmajor?: number
  devminor?: number
  /** the target of a fast symlink, as debugfs prints it */
  fastLink?: string
  /** extended attributes: name and stored length */
  xattrs: Array<{name: string; length: number}>
}

export function parseStat(text: string, ino: number): InodeInfo {
  const num = (re: RegExp, what: string) => {
    const m = re.exec(text)
    if (!m) throw new StageError(`debugfs stat of inode ${ino} has no ${what}`, {details: text.split('\n').slice(0, 8)})
    return m
  }
  const header = num(/^Inode: (\d+)\s+Type: [^\n]*?Mode:\s+([0-7]+)/m, 'mode')
  if (Number(header[1]) !== ino) throw new StageError(`debugfs answered stat of inode ${header[1]} for inode ${ino}`)
  const owner = num(/^User:\s+(\d+)\s+Group:\s+(\d+)/m, 'owner')
  const size = num(/^User:.*\sSize: (\d+)$/m, 'size')
  const links = num(/^Links: (\d+)/m, 'link count')
  const mtime = num(/^\s*mtime: 0x([0-9a-f]{8})(?::([0-9a-f]{8}))?/m, 'mtime')
  // ext4 times: a signed 32-bit count, widened by the two epoch bits of the extra field
  const mtimeSeconds = (Number.parseInt(mtime[1], 16) | 0) + (mtime[2] ? (Number.parseInt(mtime[2], 16) & 3) * 2 ** 32 : 0)
  const info: InodeInfo = {
    ino,
    perm: Number.parseInt(header[2], 8) & 0o7777,
    uid: Number(owner[1]),
    gid: Number(owner[2]),
    size: Number(size[1]),
    links: Number(links[1]),
    mtime: mtimeSeconds,
    xattrs: [],
  }
  const dev = /^Device major\/minor number: (\d+):(\d+)/m.exec(text)
  if (dev) {
    info.devmajor = Number(dev[1])
    info.devminor = Number(dev[2])
  }
  const link = /^Fast link dest: "(.*)"$/m.exec(text)
  if (link) info.fastLink = link[1]
  const ea = text.indexOf('\nExtended attributes:\n')
  if (ea >= 0 || text.startsWith('Extended attributes:\n')) {
    const lines = text.slice(text.indexOf('Extended attributes:\n') + 'Extended attributes:\n'.length).split('\n')
    for (const line of lines) {
      if (!line.startsWith('  ')) break
      const m = /^ {2}(\S+) \((\d+)\)/.exec(line)
      if (!m) throw new InputError(`inode ${ino} has an extended attribute cvm-image cannot name: ${JSON.stringify(line.slice(0, 80))}`)
      info.xattrs.push({name: m[1], length: Number(m[2])})
    }
  }
  return info
}
