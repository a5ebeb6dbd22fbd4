import {InputError} from '../errors.js'
import {run} from '../util/exec.js'
import {SECTOR} from './gpt.js'

/** A partition as sfdisk --json reads it: start and size in sectors; type a GPT type GUID (upper case) or an MBR type byte in hex. */
export interface TablePartition {
  node: string
  start: number
  size: number
  type: string
}

export interface PartitionTable {
  label: 'gpt' | 'dos' | string
  sectorSize: number
  partitions: TablePartition[]
}

/**
 * The one partition-table reader of the project (base disks, the assembled disk's ESP): what
 * sfdisk reads from a disk file, or null when the disk has none (a filesystem on the whole disk).
 */
export async function readPartitionTable(disk: string): Promise<PartitionTable | null> {
  const r = await run('sfdisk', ['--json', disk], {what: `read the partition table of ${disk}`, env: {LC_ALL: 'C'}, reject: false})
  if (r.exitCode !== 0) {
    if (/does not contain a recognized partition table/.test(r.stderr)) return null
    throw new InputError(`cannot read the partition table of ${disk}: ${r.stderr.trim().split('\n').at(-1)}`, {hint: 'check that the file is a whole disk image'})
  }
  const t = (JSON.parse(r.stdout) as {partitiontable: {label: string; sectorsize?: number; partitions?: TablePartition[]}}).partitiontable
  return {label: t.label, sectorSize: t.sectorsize ?? SECTOR, partitions: (t.partitions ?? []).map((p) => ({...p, type: p.type.toUpperCase()}))}
}
