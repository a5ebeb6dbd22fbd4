import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {ESP_TYPE} from '../disk/gpt.js'
import {UKI_ESP_PATH} from '../disk/image.js'
import {parsePe, sectionInMemory} from '../disk/pe.js'
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
  const table = await readPartitionTable(disk, {untrusted: false})
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

/** The sections of a PE image (a UKI: .linux, .initrd, .cmdline, .osrel, ...), as the loader puts them in memory (src/disk/pe.ts). */
export function peSections(image: Buffer): PeSection[] {
  return parsePe(image, 'the UKI').sections.map((s) => ({name: s.name, data: sectionInMemory(image, s, 'the UKI')}))
}

/** The UKI's built-in kernel command line (.cmdline), and its kernel and initrd sections. */
export function ukiParts(image: Buffer): {cmdline: string; linux?: Buffer; initrd?: Buffer} {
  const sections = peSections(image)
  const get = (n: string) => sections.find((s) => s.name === n)?.data
  const cmdline = get('.cmdline')
  if (!cmdline) throw new InputError('the UKI has no .cmdline section', {hint: 'assemble must build the UKI with a .cmdline section'})
  return {cmdline: cmdline.toString('utf8').replace(/\0+$/, '').trim(), linux: get('.linux'), initrd: get('.initrd')}
}
