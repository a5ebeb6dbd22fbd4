import {existsSync} from 'node:fs'
import {stat} from 'node:fs/promises'

import {HostError} from '../errors.js'
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
}
