import {writeFileSync} from 'node:fs'
import {mkdir, open, rm, truncate, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {InputError} from '../errors.js'
import {run} from '../util/exec.js'
import type {XattrRecord} from '../rootfs/transform.js'

/**
 * The ext4 root filesystem as an image file, rootless: the rootfs tarball is unpacked under
 * fakeroot (which records owners, modes and device nodes) and mke2fs -d copies that tree in the
 * same fakeroot state. mke2fs 1.47.0 (bookworm) cannot read a tarball with -d itself.
 *
 * Reproducible: features come from our own mke2fs.conf, not the host's; UUID and hash seed are
 * given; E2FSPROGS_FAKE_TIME pins the filesystem's own times. The unpacked tree's ctime and atime
 * are the unpack time, so a debugfs pass sets them to SOURCE_DATE_EPOCH for every inode in use;
 * the same pass writes the extended attributes (fakeroot 1.31 loses a file's type when a
 * security.capability is set under it, so xattrs do not go through the unpacked tree).
 */

/** Pinned so a host's /etc/mke2fs.conf cannot change the image. Kernels >= 3.18 mount these features. */
const MKE2FS_CONF = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
`

export interface RootFsOptions {
  /** the transformed rootfs tarball */
  tarball: string
  /** the image file to create */
  image: string
  sizeBytes: number
  uuid: string
  hashSeed: string
  label: string
  sourceDateEpoch: number
  xattrs: readonly XattrRecord[]
  /** scratch space (the unpacked tree lives here) */
  work: string
  logFile?: string
  signal?: AbortSignal
}

export async function makeRootFilesystem(opts: RootFsOptions): Promise<void> {
  const tree = join(opts.work, 'root-tree')
  const state = join(opts.work, 'fakeroot.state')
  const conf = join(opts.work, 'mke2fs.conf')
  const env = {LC_ALL: 'C', E2FSPROGS_FAKE_TIME: String(opts.sourceDateEpoch), MKE2FS_CONFIG: conf}
  await mkdir(tree, {recursive: true})
  await writeFile(conf, MKE2FS_CONF)
  try {
    // --delay-directory-restore: entries appended after their directory (the CVM files) must not leave it with the unpack time as mtime
    await run('fakeroot', ['-s', state, '--', 'tar', '--extract', '--file', opts.tarball, '--directory', tree, '--numeric-owner', '--same-owner', '--same-permissions', '--no-xattrs', '--delay-directory-restore'], {
      what: 'unpack the rootfs under fakeroot',
      env,
      logFile: opts.logFile,
      signal: opts.signal,
    })
    await rm(opts.image, {force: true})
    const fh = await open(opts.image, 'w')
    await fh.close()
    await truncate(opts.image, opts.sizeBytes)
    await run(
      'fakeroot',
      ['-i', state, '--', 'mke2fs', '-q', '-F', '-t', 'ext4', '-L', opts.label, '-U', opts.uuid, '-E', `hash_seed=${opts.hashSeed},nodiscard,lazy_itable_init=0,lazy_journal_init=0`, '-d', tree, opts.image],
      {what: 'make the ext4 root filesystem', env, logFile: opts.logFile, signal: opts.signal},
    )
  } finally {
    // the tree has read-only directories (e.g. /proc 0555): make them writable so it can be removed
    await run('chmod', ['-R', 'u+rwX', tree], {reject: false})
    await rm(tree, {recursive: true, force: true})
  }
  await fixInodes(opts, env)
}

/** One debugfs pass: times of every inode in use, then the extended attributes. */
async function fixInodes(opts: RootFsOptions, env: Record<string, string>): Promise<void> {
  const inodes = await inodesInUse(opts.image)
  const t = `@${opts.sourceDateEpoch}`
  const lines: string[] = []
  for (const ino of inodes) lines.push(`sif <${ino}> atime ${t}`, `sif <${ino}> ctime ${t}`)
  const valueDir = join(opts.work, 'xattr-values')
  await mkdir(valueDir, {recursive: true})
  opts.xattrs.forEach((x, i) => {
    if (/["\\\x00-\x1f\x7f]/.test(x.name)) {
      throw new InputError(`rootfs entry "${x.name}" has extended attribute ${x.key} but its name cannot be written by debugfs (quote, backslash or control character)`, {
        hint: 'rename the file in the base, or drop the attribute',
      })
    }
    const valueFile = join(valueDir, String(i))
    writeFileSync(valueFile, x.value)
    lines.push(`ea_set -f ${valueFile} "/${x.name}" ${x.key}`)
  })
  const script = join(opts.work, 'debugfs.script')
  await writeFile(script, lines.join('\n') + '\n')
  const r = await run('debugfs', ['-w', '-f', script, opts.image], {what: 'set inode times and extended attributes', env, logFile: opts.logFile, signal: opts.signal})
  // debugfs reports command failures on stderr and still exits 0
  const failures = r.stderr.split('\n').filter((l) => l.trim() && !/^debugfs \d/.test(l))
  if (failures.length) {
    throw new InputError(`debugfs could not apply ${failures.length} inode change${failures.length === 1 ? '' : 's'} to ${opts.image}`, {details: failures.slice(0, 20)})
  }
}

/** Inodes in use: the root and every allocated inode from the first non-reserved one on. */
export async function inodesInUse(image: string): Promise<number[]> {
  const r = await run('dumpe2fs', [image], {what: 'read the inode bitmaps', env: {LC_ALL: 'C'}})
  const text = r.stdout
  const num = (label: string) => Number(new RegExp(`^${label}:\\s+(\\d+)`, 'm').exec(text)?.[1])
  const count = num('Inode count')
  const perGroup = num('Inodes per group')
  const first = num('First inode')
  const free = new Uint8Array(count + 1)
  let group = -1
  for (const line of text.split('\n')) {
    if (/^Group \d+:/.test(line)) group = Number(/^Group (\d+):/.exec(line)![1])
    const m = /^\s+Free inodes: (.*)$/.exec(line)
    if (!m || group < 0) continue
    for (const range of m[1].split(',').map((s) => s.trim()).filter(Boolean)) {
      const [a, b] = range.split('-').map(Number)
      for (let i = a; i <= (b ?? a); i++) free[i] = 1
    }
  }
  if (!count || !perGroup || !first) throw new InputError(`dumpe2fs gave no inode counts for ${image}`)
  const out = [2]
  for (let i = first; i <= count; i++) if (!free[i]) out.push(i)
  return out
}
