import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'

import {InputError} from '../errors.js'
import {guidBytes} from './guid.js'

/**
 * The SEV hashes table QEMU writes for a measured direct boot (-kernel with sev-guest
 * kernel-hashes=on; target/i386/sev.c sev_add_kernel_loader_hashes) and measures with
 * LAUNCH_UPDATE_DATA; OvmfPkg/AmdSev's loader checks the kernel, initrd and command line it fetches
 * against it (docs/measurements.md "Measured direct boot").
 *
 * Layout, packed, little-endian: the table GUID, u16 length of the table, then three entries
 * (cmdline, initrd, kernel), each a GUID, u16 entry length (50) and the SHA-256; zero padding to a
 * multiple of 16 bytes. 18 + 3 * 50 = 168 bytes, 176 padded.
 */
const TABLE_GUID = '9438d606-4f22-4cc9-b479-a793d411fd21'
const CMDLINE_GUID = '97d02dd8-bd20-4c94-aa78-e7714d36ab2a'
const INITRD_GUID = '44baf731-3a2f-4bd7-9af1-41e29169781d'
const KERNEL_GUID = '4de79437-abd2-427f-b835-d5b172d2045b'

const ENTRY_LENGTH = 16 + 2 + 32
const TABLE_LENGTH = 16 + 2 + 3 * ENTRY_LENGTH
/** what QEMU measures: the table padded to 16 bytes */
export const PADDED_SEV_HASHES_TABLE_LENGTH = Math.ceil(TABLE_LENGTH / 16) * 16

export interface KernelLoaderHashes {
  kernel: Buffer
  initrd: Buffer
  cmdline: Buffer
}

/** The padded table, as measured. */
export function sevHashesTable(h: KernelLoaderHashes): Buffer {
  const table = Buffer.alloc(PADDED_SEV_HASHES_TABLE_LENGTH)
  guidBytes(TABLE_GUID).copy(table, 0)
  table.writeUInt16LE(TABLE_LENGTH, 16)
  let at = 18
  for (const [guid, hash] of [[CMDLINE_GUID, h.cmdline], [INITRD_GUID, h.initrd], [KERNEL_GUID, h.kernel]] as const) {
    guidBytes(guid).copy(table, at)
    table.writeUInt16LE(ENTRY_LENGTH, at + 16)
    hash.copy(table, at + 18)
    at += ENTRY_LENGTH
  }
  return table
}

export interface KernelBoot {
  /** the file given to QEMU's -kernel */
  kernel: string
  /** -initrd; none hashes as empty */
  initrd?: string
  /** -append; none is the empty command line */
  append?: string
}

/**
 * The three hashes as QEMU makes them: the kernel file whole (its setup and the rest, as read), the
 * initrd file (empty without one), and the command line with its terminating NUL.
 */
export async function kernelLoaderHashes(boot: KernelBoot): Promise<KernelLoaderHashes> {
  return {
    kernel: await hashFile(boot.kernel, '--kernel'),
    initrd: boot.initrd === undefined ? createHash('sha256').digest() : await hashFile(boot.initrd, '--initrd'),
    cmdline: createHash('sha256').update(Buffer.concat([Buffer.from(boot.append ?? '', 'utf8'), Buffer.alloc(1)])).digest(),
  }
}

async function hashFile(path: string, flag: string): Promise<Buffer> {
  const h = createHash('sha256')
  try {
    for await (const chunk of createReadStream(path)) h.update(chunk as Buffer)
  } catch (e) {
    throw new InputError(`cannot read ${flag} ${path}: ${(e as Error).message}`, {hint: `give the file QEMU is given as ${flag.slice(1)}`})
  }
  return h.digest()
}
