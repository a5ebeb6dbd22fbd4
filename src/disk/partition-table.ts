import {stat} from 'node:fs/promises'

import {InputError} from '../errors.js'
import {run} from '../util/exec.js'
import {runConfined} from '../util/sandbox.js'
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

/** Where the disk is seen inside the sandbox: sfdisk names partitions after it ("/in/disk1"). */
const INSIDE = '/in/disk'

/**
 * The one partition-table reader of the project (base disks, the assembled disk's ESP): what
 * sfdisk reads from a disk file, or null when the disk has none (a filesystem on the whole disk).
 * A base image's bytes are untrusted: sfdisk then runs confined to that one file (util/sandbox.ts).
 * A disk cvm-image assembled (validate, measure, publish read its ESP) is read directly, so those
 * commands need no user namespaces. Every partition must lie within the file, so no reader is sent
 * past its end.
 */
export async function readPartitionTable(disk: string, opts: {untrusted: boolean}): Promise<PartitionTable | null> {
  const what = `read the partition table of ${disk}`
  const r = opts.untrusted ? await runConfined('sfdisk', ['--json', INSIDE], {readOnly: [{host: disk, inside: INSIDE}], writable: []}, {what}) : await run('sfdisk', ['--json', disk], {what, reject: false})
  const seenAs = opts.untrusted ? INSIDE : disk
  if (r.exitCode !== 0) {
    if (/does not contain a recognized partition table/.test(r.stderr)) return null
    throw new InputError(`cannot read the partition table of ${disk}: ${r.stderr.trim().split('\n').at(-1)?.replaceAll(seenAs, disk)}`, {hint: 'check that the file is a whole disk image'})
  }
  const t = (JSON.parse(r.stdout) as {partitiontable: {label: string; sectorsize?: number; partitions?: TablePartition[]}}).partitiontable
  const table = {label: t.label, sectorSize: t.sectorsize ?? SECTOR, partitions: (t.partitions ?? []).map((p) => ({...p, node: disk + p.node.slice(seenAs.length), type: p.type.toUpperCase()}))}
  const size = (await stat(disk)).size
  for (const p of table.partitions) {
    const end = (p.start + p.size) * table.sectorSize
    if (p.start < 1 || p.size < 1 || end > size) {
      throw new InputError(`the partition table of ${disk}: partition ${p.node.slice(disk.length)} (sectors ${p.start} to ${p.start + p.size - 1}, ${table.sectorSize}-byte sectors) ${end > size ? `ends at byte ${end}, past the end of the ${size}-byte disk` : 'is empty or starts at sector 0'}`, {
        hint: 'the disk image is damaged or cut short, or its partition table was made to point outside it: download it again, or check it with `sfdisk --verify`',
      })
    }
  }
  return table
}
