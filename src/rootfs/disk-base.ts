import {stat, symlink, rm, writeFile} from 'node:fs/promises'
import {join, resolve} from 'node:path'

import {InputError} from '../errors.js'
import {filesystemType} from '../disk/filesystem.js'
import {type DiskFormat, inspectDiskImage} from '../disk/inspect.js'
import {findRootPartition} from '../disk/root-partition.js'
import {requireFreeSpace} from '../util/free-space.js'
import {runConfined} from '../util/sandbox.js'
import {ext4ToTar, type Ext4ToTarResult} from './ext4-tar.js'

export {DISK_FORMATS, type DiskFormat, isDiskFormat} from '../disk/inspect.js'

export interface DiskRootfsResult extends Ext4ToTarResult {
  /** where the root filesystem was found, e.g. 'GPT partition 1 (Linux root x86-64)' */
  where: string
}

/**
 * A disk image base (qcow2, vmdk or raw) as a rootfs tarball, without root. First cvm-image's own
 * header reader (disk/inspect.ts) says what the file is and refuses any form that refers to another
 * file, before any tool opens it. qcow2 and vmdk then become a sparse raw file in the work dir
 * (qemu-img, confined to that file and the image: util/sandbox.ts), once the file system has room
 * for the image's virtual size; the root partition is found in the partition table, and its
 * ext2/3/4 filesystem is read with debugfs (ext4ToTar), sfdisk and debugfs confined like qemu-img
 * (issue #29). Any other filesystem is refused. `file` is read; `io.shownAs` names it in messages.
 */
export async function diskToRootfs(file: string, format: DiskFormat, output: string, work: string, io: {progress: (l: string) => void; signal?: AbortSignal; logFile?: string; shownAs?: string}): Promise<DiskRootfsResult> {
  // `file` is what is read; messages name it as the user knows it
  const source = io.shownAs ?? file
  // debugfs takes options after a "?" in the file name: it only ever sees this name
  const raw = join(work, 'disk.raw')
  await rm(raw, {force: true})
  const image = await inspectDiskImage(file, format, source)
  io.progress(`${image.variant}, ${image.virtualSize} bytes: no reference to another file`)
  if (format === 'raw') {
    await symlink(resolve(file), raw)
  } else {
    await requireFreeSpace(work, image.virtualSize, `the base stage's conversion of the ${format} disk to raw (its virtual size, ${image.virtualSize} bytes)`, 'free that much where the cache is, or point --cache-dir (or CVM_IMAGE_CACHE) at a larger file system')
    io.progress(`converting the ${format} disk to raw`)
    // the converter sees the image and its output under fixed names, and nothing else of the host
    const inside = `/in/base.${format}`
    await writeFile(raw, '')
    const r = await runConfined('qemu-img', ['convert', '-f', format, '-O', 'raw', inside, '/out/disk.raw'], {readOnly: [{host: file, inside}], writable: [{host: raw, inside: '/out/disk.raw'}]}, {what: `convert the ${format} base to raw`, signal: io.signal, logFile: io.logFile}).catch(async (e: unknown) => {
      await rm(raw, {force: true})
      throw e
    })
    if (r.exitCode !== 0) {
      await rm(raw, {force: true})
      throw new InputError(`the ${format} base ${source} cannot be read by qemu-img: ${r.stderr.trim().split('\n').at(-1) ?? `exit ${r.exitCode}`}`, {
        hint: `check that it is a ${format} disk image (qemu-img info ${source}) and that the recipe's base.format says what it is; if it was downloaded, download it again`,
      })
    }
  }
  try {
    const size = (await stat(raw)).size
    const root = await findRootPartition(raw, size)
    const fsType = await filesystemType(raw, root.offset)
    if (fsType !== 'ext2/3/4') {
      throw new InputError(`the ${format} base ${source}: its root, ${root.where}, is ${fsType === 'unknown' ? 'no filesystem cvm-image recognizes' : fsType}; cvm-image reads only ext2/3/4 root filesystems from disk images (without root, with debugfs)`, {
        hint: 'export the root filesystem as a tarball where you have root or libguestfs (e.g. `virt-tar-out -a disk.qcow2 / rootfs.tar`), then build a recipe whose base is that tarball: `base: {kind: image, format: tar, url: <where it is>, sha256: <its sha256>}`, or sha256: null with --base-file rootfs.tar',
      })
    }
    io.progress(`reading ${root.where}`)
    const result = await ext4ToTar({image: raw, offset: root.offset, output, work, progress: io.progress, signal: io.signal, logFile: io.logFile})
    return {...result, where: root.where}
  } finally {
    await rm(raw, {force: true})
  }
}
