import {run} from '../util/exec.js'
import {StageError} from '../errors.js'

/** GPT on a plain file with sfdisk: no loop device, no root. */

export const SECTOR = 512
const MIB_SECTORS = (1024 * 1024) / SECTOR
/** the backup GPT: 32 sectors of entries and a header */
const BACKUP_GPT_SECTORS = 33
export const ESP_TYPE = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B'
/** "Linux root (x86-64)" from the Discoverable Partitions Specification */
export const ROOT_X86_64_TYPE = '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709'

export interface PartitionSpec {
  name: string
  type: string
  uuid: string
  /** in sectors */
  start: number
  size: number
}

export interface DiskLayout {
  sizeBytes: number
  diskGuid: string
  esp: PartitionSpec
  root: PartitionSpec
}

/** ESP of espMiB at 1 MiB, root filling the rest, both 1 MiB aligned. */
export function planLayout(opts: {sizeGiB: number; espMiB: number; diskGuid: string; espPartUuid: string; rootPartUuid: string}): DiskLayout {
  const sizeBytes = opts.sizeGiB * 1024 ** 3
  const total = sizeBytes / SECTOR
  const esp = {name: 'esp', type: ESP_TYPE, uuid: opts.espPartUuid, start: MIB_SECTORS, size: opts.espMiB * MIB_SECTORS}
  const rootStart = esp.start + esp.size
  const rootSize = Math.floor((total - BACKUP_GPT_SECTORS - rootStart) / MIB_SECTORS) * MIB_SECTORS
  if (rootSize < 64 * MIB_SECTORS) throw new StageError(`a ${opts.sizeGiB} GiB disk leaves no room for the root filesystem after a ${opts.espMiB} MiB ESP`, {hint: 'raise recipe.image.size_gib'})
  return {sizeBytes, diskGuid: opts.diskGuid, esp, root: {name: 'root', type: ROOT_X86_64_TYPE, uuid: opts.rootPartUuid, start: rootStart, size: rootSize}}
}

export function sfdiskScript(layout: DiskLayout): string {
  const line = (p: PartitionSpec) => `start=${p.start}, size=${p.size}, type=${p.type}, uuid=${p.uuid}, name="${p.name}"`
  return [
    'label: gpt',
    `label-id: ${layout.diskGuid}`,
    'unit: sectors',
    'sector-size: 512',
    `first-lba: ${MIB_SECTORS}`,
    '',
    line(layout.esp),
    line(layout.root),
    '',
  ].join('\n')
}

/** Writes the partition table into an existing file of layout.sizeBytes. */
export async function writePartitionTable(disk: string, layout: DiskLayout, logFile?: string): Promise<void> {
  await run('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', '--wipe', 'never', disk], {
    input: sfdiskScript(layout),
    what: 'write the GPT partition table',
    logFile,
    env: {LC_ALL: 'C'},
  })
}
