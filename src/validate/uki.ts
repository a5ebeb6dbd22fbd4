import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {ESP_TYPE} from '../disk/gpt.js'
import {UKI_ESP_PATH} from '../disk/image.js'
import {readPartitionTable} from '../disk/partition-table.js'
import {InputError} from '../errors.js'
import {sha256} from '../util/fsx.js'
import {run} from '../util/exec.js'


export interface EspLocation {
  offset: number
  size: number
}

/** Finds the EFI system partition of a GPT disk image, from its partition table (src/disk/partition-table.ts). */
export async function findEsp(disk: string): Promise<EspLocation> {
  const table = await readPartitionTable(disk)
  if (!table || table.label !== 'gpt') throw new InputError(`${disk}: no GPT header at LBA 1 (${table ? `its partition table is ${table.label}` : 'it has no partition table'})`, {hint: 'validate takes the disk.raw that assemble made (GPT, ESP + root)'})
  const esp = table.partitions.find((p) => p.type === ESP_TYPE)
  if (!esp) throw new InputError(`${disk}: the GPT has no EFI system partition`, {hint: 'validate takes the disk.raw that assemble made'})
  return {offset: esp.start * table.sectorSize, size: esp.size * table.sectorSize}
}

/** Copies \EFI\BOOT\BOOTX64.EFI out of the disk's ESP with mtools (no mount). */
export async function extractUki(disk: string, dir: string, signal?: AbortSignal): Promise<{path: string; sha256: string}> {
  const esp = await findEsp(disk)
  const path = join(dir, 'uki.efi')
  await run('mcopy', ['-n', '-i', `${disk}@@${esp.offset}`, `::${UKI_ESP_PATH}`, path], {
    what: `copy ${UKI_ESP_PATH} out of the ESP of ${disk}`,
    signal,
    hint: 'the disk must hold a UKI at \\EFI\\BOOT\\BOOTX64.EFI on its ESP',
  })
  return {path, sha256: sha256(await readFile(path))}
}

export interface PeSection {
  name: string
  data: Buffer
}

/** The sections of a PE image (a UKI: .linux, .initrd, .cmdline, .osrel, ...). */
export function peSections(image: Buffer): PeSection[] {
  if (image.toString('latin1', 0, 2) !== 'MZ') throw new InputError('not a PE image (no MZ header)')
  const pe = image.readUInt32LE(0x3c)
  if (image.toString('latin1', pe, pe + 4) !== 'PE\0\0') throw new InputError('not a PE image (no PE signature)')
  const count = image.readUInt16LE(pe + 6)
  const optSize = image.readUInt16LE(pe + 20)
  const table = pe + 24 + optSize
  const out: PeSection[] = []
  for (let i = 0; i < count; i++) {
    const s = table + i * 40
    const name = image.toString('latin1', s, s + 8).replace(/\0+$/, '')
    const virtualSize = image.readUInt32LE(s + 8)
    const rawSize = image.readUInt32LE(s + 16)
    const ptr = image.readUInt32LE(s + 20)
    out.push({name, data: image.subarray(ptr, ptr + Math.min(virtualSize || rawSize, rawSize))})
  }
  return out
}

/** The UKI's built-in kernel command line (.cmdline), and its kernel and initrd sections. */
export function ukiParts(image: Buffer): {cmdline: string; linux?: Buffer; initrd?: Buffer} {
  const sections = peSections(image)
  const get = (n: string) => sections.find((s) => s.name === n)?.data
  const cmdline = get('.cmdline')
  if (!cmdline) throw new InputError('the UKI has no .cmdline section', {hint: 'assemble must build the UKI with a .cmdline section'})
  return {cmdline: cmdline.toString('utf8').replace(/\0+$/, '').trim(), linux: get('.linux'), initrd: get('.initrd')}
}
