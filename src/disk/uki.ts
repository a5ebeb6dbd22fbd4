import {existsSync} from 'node:fs'
import {readFile, stat, writeFile} from 'node:fs/promises'

import {HostError, StageError} from '../errors.js'
import {run} from '../util/exec.js'

/**
 * A unified kernel image: systemd's EFI stub with the kernel, command line and os-release as PE
 * sections, so OVMF boots \EFI\BOOT\BOOTX64.EFI with no boot loader and no NVRAM entry.
 */

export const EFI_STUB = '/usr/lib/systemd/boot/efi/linuxx64.efi.stub'
/** section addresses systemd-stub 252 expects (as ukify and mkosi use them) */
const OSREL_VMA = 0x20000
const CMDLINE_VMA = 0x30000
const LINUX_VMA = 0x2000000
const ALIGN = 0x100000

export interface UkiParts {
  stub?: string
  vmlinuz: string
  /** file holding the command line */
  cmdlineFile: string
  /** file holding the image's os-release */
  osReleaseFile: string
  initrd?: string
}

export async function buildUki(parts: UkiParts, out: string, opts: {sourceDateEpoch: number; logFile?: string}): Promise<void> {
  const stub = parts.stub ?? EFI_STUB
  if (!existsSync(stub)) {
    throw new HostError(`the systemd EFI stub ${stub} is missing (needed to build the unified kernel image)`, {hint: 'apt-get install systemd-boot-efi'})
  }
  const args = [
    '--add-section', `.osrel=${parts.osReleaseFile}`, '--change-section-vma', `.osrel=0x${OSREL_VMA.toString(16)}`,
    '--add-section', `.cmdline=${parts.cmdlineFile}`, '--change-section-vma', `.cmdline=0x${CMDLINE_VMA.toString(16)}`,
    '--add-section', `.linux=${parts.vmlinuz}`, '--change-section-vma', `.linux=0x${LINUX_VMA.toString(16)}`,
  ]
  if (parts.initrd) {
    const kernelSize = (await stat(parts.vmlinuz)).size
    const initrdVma = Math.ceil((LINUX_VMA + kernelSize) / ALIGN) * ALIGN
    args.push('--add-section', `.initrd=${parts.initrd}`, '--change-section-vma', `.initrd=0x${initrdVma.toString(16)}`)
  }
  await run('objcopy', [...args, stub, out], {what: 'build the unified kernel image', env: {SOURCE_DATE_EPOCH: String(opts.sourceDateEpoch)}, logFile: opts.logFile})
  await writeFile(out, pinPeTimestamp(await readFile(out), opts.sourceDateEpoch))
}

/**
 * objcopy (binutils 2.40) stamps the PE header with the current time whatever SOURCE_DATE_EPOCH
 * says: write SOURCE_DATE_EPOCH there and recompute the PE checksum, so the UKI is reproducible.
 */
export function pinPeTimestamp(pe: Buffer, epoch: number): Buffer {
  const peOffset = pe.readUInt32LE(0x3c)
  if (pe.readUInt32LE(peOffset) !== 0x00004550) throw new StageError('objcopy produced a UKI without a PE header')
  const coff = peOffset + 4
  pe.writeUInt32LE(epoch >>> 0, coff + 4)
  const checksumAt = coff + 20 + 64
  pe.writeUInt32LE(0, checksumAt)
  pe.writeUInt32LE(peChecksum(pe, checksumAt), checksumAt)
  return pe
}

/** The PE image checksum: 16-bit one's-complement style sum over the file, plus its length. */
function peChecksum(pe: Buffer, checksumAt: number): number {
  let sum = 0
  const words = Math.floor(pe.length / 2)
  for (let i = 0; i < words; i++) {
    const at = i * 2
    if (at === checksumAt || at === checksumAt + 2) continue
    sum += pe.readUInt16LE(at)
    sum = (sum & 0xffff) + (sum >>> 16)
  }
  if (pe.length % 2) {
    sum += pe[pe.length - 1]
    sum = (sum & 0xffff) + (sum >>> 16)
  }
  return ((sum & 0xffff) + pe.length) >>> 0
}
