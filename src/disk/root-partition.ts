import {InputError} from '../errors.js'
import {ROOT_X86_64_TYPE} from './gpt.js'
import {readPartitionTable} from './partition-table.js'

/** GPT "Linux filesystem data": what most cloud images give their root (Ubuntu, CentOS, SLES). */
export const LINUX_DATA_TYPE = '0FC63DAF-8483-4772-8E79-3D69D8477DE4'
const LINUX_LVM_TYPE = 'E6D6D379-F507-44C2-A23C-238F2A3DF928'
const MBR_LINUX = '83'
const MBR_LVM = '8E'

/** Where a disk's root filesystem is, in bytes, and how it was picked (for messages). */
export interface RootLocation {
  /** 1-based partition number; null for a filesystem on the whole disk */
  partition: number | null
  offset: number
  size: number
  /** e.g. 'GPT partition 2 (Linux root x86-64)' */
  where: string
}

function typeName(label: string, type: string): string {
  const t = type.toUpperCase()
  if (t === ROOT_X86_64_TYPE) return 'Linux root x86-64'
  if (t === LINUX_DATA_TYPE || (label === 'dos' && t === MBR_LINUX)) return 'Linux filesystem'
  if (t === LINUX_LVM_TYPE || (label === 'dos' && t === MBR_LVM)) return 'Linux LVM'
  return `type ${type}`
}

/**
 * The partition that holds the root filesystem: GPT's "Linux root (x86-64)" if there is one, else
 * the largest Linux filesystem partition (GPT or MBR); a disk with no partition table is taken as
 * one filesystem. Which filesystem it holds is the caller's to check.
 */
export async function findRootPartition(disk: string, diskSize: number): Promise<RootLocation> {
  const table = await readPartitionTable(disk, {untrusted: true})
  if (!table) return {partition: null, offset: 0, size: diskSize, where: 'the whole disk (no partition table)'}
  const parts = table.partitions.map((p) => ({...p, number: Number(/(\d+)$/.exec(p.node.slice(disk.length))?.[1] ?? 0)}))
  const largest = (ps: typeof parts) => ps.reduce((a, b) => (b.size > a.size ? b : a))
  const roots = parts.filter((p) => p.type.toUpperCase() === ROOT_X86_64_TYPE)
  const linux = parts.filter((p) => typeName(table.label, p.type) === 'Linux filesystem')
  const pick = roots.length ? largest(roots) : linux.length ? largest(linux) : undefined
  const label = table.label === 'dos' ? 'MBR' : table.label.toUpperCase()
  if (!pick) {
    throw new InputError(`${disk} has no Linux root partition: its ${label} holds ${parts.length ? parts.map((p) => `partition ${p.number} (${typeName(table.label, p.type)})`).join(', ') : 'no partitions'}`, {
      details: parts.some((p) => typeName(table.label, p.type) === 'Linux LVM') ? ['the root is on LVM, which cvm-image does not read'] : [],
      hint: 'export the root filesystem as a tarball (e.g. `virt-tar-out -a <disk> / rootfs.tar`) and give it as a base of format tar',
    })
  }
  return {
    partition: pick.number,
    offset: pick.start * table.sectorSize,
    size: pick.size * table.sectorSize,
    where: `${label} partition ${pick.number} (${typeName(table.label, pick.type)})`,
  }
}
