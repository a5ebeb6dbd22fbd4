import {copyFile, open, rm, truncate, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {StageError} from '../errors.js'
import {sha256ByExtents} from '../util/extent-hash.js'
import {sha256File} from '../util/fsx.js'
import {copySparse, type CopyTarget} from '../util/sparse-copy.js'
import type {XattrRecord} from '../rootfs/transform.js'
import {makeEsp} from './esp.js'
import {signPe, type SecureBootSigner} from './secure-boot.js'
import {makeRootFilesystem} from './ext4.js'
import {type DiskLayout, SECTOR, writePartitionTable} from './gpt.js'
import {buildUki} from './uki.js'

/**
 * The bootable disk: UKI -> ESP image -> ext4 root image -> GPT disk file with both copied in at
 * their offsets. Every step works on plain files.
 */

export const UKI_ESP_PATH = '/EFI/BOOT/BOOTX64.EFI'

export interface DiskInputs {
  layout: DiskLayout
  /** transformed rootfs tarball */
  rootfsTar: string
  xattrs: readonly XattrRecord[]
  vmlinuz: string
  initrd?: string
  cmdline: string
  osRelease: Buffer
  espSerial: string
  rootFsUuid: string
  rootHashSeed: string
  sourceDateEpoch: number
  work: string
  logFile?: string
  signal?: AbortSignal
  /** sign the UKI for Secure Boot (after it is built, before it goes on the ESP) */
  signer?: SecureBootSigner
}

export interface DiskOutputs {
  disk: string
  uki: string
  /** the build cache's sha256s by extent digest (src/util/extent-hash.ts): the disk's is kept there for validate and publish */
  sha256MemoDir?: string
}

export async function assembleDisk(inp: DiskInputs, out: DiskOutputs, progress: (line: string) => void = () => {}): Promise<{diskSha256: string; ukiSha256: string}> {
  const {layout, work} = inp
  const cmdlineFile = join(work, 'cmdline.txt')
  const osReleaseFile = join(work, 'os-release')
  await writeFile(cmdlineFile, inp.cmdline)
  await writeFile(osReleaseFile, inp.osRelease)

  progress('building the unified kernel image')
  await buildUki({vmlinuz: inp.vmlinuz, initrd: inp.initrd, cmdlineFile, osReleaseFile}, out.uki, {sourceDateEpoch: inp.sourceDateEpoch, logFile: inp.logFile})
  if (inp.signer) {
    progress('signing the UKI for Secure Boot')
    await signPe(out.uki, inp.signer, inp.sourceDateEpoch, inp.logFile)
  }

  progress('making the ESP')
  const esp = join(work, 'esp.img')
  const ukiOnEsp = join(work, 'BOOTX64.EFI')
  await rm(esp, {force: true})
  await copyFile(out.uki, ukiOnEsp)
  await makeEsp({image: esp, sizeBytes: layout.esp.size * SECTOR, serial: inp.espSerial, files: [{source: ukiOnEsp, dest: UKI_ESP_PATH}], sourceDateEpoch: inp.sourceDateEpoch, logFile: inp.logFile})

  progress('making the ext4 root filesystem')
  const root = join(work, 'root.img')
  await makeRootFilesystem({
    tarball: inp.rootfsTar,
    image: root,
    sizeBytes: layout.root.size * SECTOR,
    uuid: inp.rootFsUuid,
    hashSeed: inp.rootHashSeed,
    label: 'root',
    sourceDateEpoch: inp.sourceDateEpoch,
    xattrs: inp.xattrs,
    work,
    logFile: inp.logFile,
    signal: inp.signal,
  })

  progress('writing the GPT disk')
  await rm(out.disk, {force: true})
  await (await open(out.disk, 'w')).close()
  await truncate(out.disk, layout.sizeBytes)
  await writePartitionTable(out.disk, layout, inp.logFile)
  await copyIntoDisk(esp, out.disk, layout.esp.start * SECTOR)
  await copyIntoDisk(root, out.disk, layout.root.start * SECTOR)
  await rm(esp, {force: true})
  await rm(root, {force: true})

  progress('hashing the disk')
  const diskSha256 = out.sha256MemoDir ? (await sha256ByExtents(out.disk, out.sha256MemoDir, {signal: inp.signal})).sha256 : await sha256File(out.disk)
  return {diskSha256, ukiSha256: await sha256File(out.uki)}
}

/** Copies a partition image into the (zero, sparse) disk at an offset, skipping zero chunks so the disk stays sparse. */
async function copyIntoDisk(src: string, disk: string, offset: number): Promise<void> {
  // the disk is already its full size: the partition's bytes land at offset, nothing is resumed or cut
  const target: CopyTarget = {
    where: `${disk} at byte ${offset}`,
    existingSize: async () => undefined,
    sha256Prefix: async () => '',
    open: async () => {
      const out = await open(disk, 'r+')
      return {write: async (buf, length, position) => void (await out.write(buf, 0, length, offset + position)), finish: async () => undefined, close: () => out.close()}
    },
  }
  await copySparse(src, target, {resume: false, cancelled: (from, to) => new StageError(`copy of ${from} into ${to} was cancelled`)})
}
