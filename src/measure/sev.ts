import {createHash} from 'node:crypto'

import {InputError} from '../errors.js'
import {sevEsResetAddress, sevHashesTableArea} from './ovmf-footer.js'
import {PADDED_SEV_HASHES_TABLE_LENGTH} from './sev-hashes.js'
import {BSP_RESET_ADDRESS, vmsaPage, type VmsaForm} from './vmsa.js'

/**
 * SEV and SEV-ES launch digests (docs/measurements.md). The SEV firmware keeps one SHA-256 context
 * per guest from LAUNCH_START: every LAUNCH_UPDATE_DATA adds the plaintext it encrypts, every
 * LAUNCH_UPDATE_VMSA the VMSA page it encrypts, and LAUNCH_MEASURE reports
 * HMAC-SHA-256(TIK, 0x04 || API major || API minor || build || policy || digest || MNONCE). This
 * computes that digest for what QEMU measures, in QEMU's order:
 *   1. the OVMF code image (pflash unit 0, or -bios), whole;
 *   2. with a measured direct boot, the padded SEV hashes table;
 *   3. under SEV-ES, one VMSA page per vCPU, vCPU 0 first.
 */

export interface FirmwareImage {
  /** for messages and the measurement's params */
  file: string
  bytes: Buffer
}

export interface SevDigestInput {
  firmware: FirmwareImage
  /** the padded SEV hashes table (sev-hashes.ts) of a measured direct boot */
  hashesTable?: Buffer
}

export interface SevEsDigestInput extends SevDigestInput {
  vcpus: number
  /** CPUID 1 EAX of the vCPU model */
  cpuSignature: number
  form: VmsaForm
}

export function sevLaunchDigest(input: SevDigestInput): Buffer {
  const h = createHash('sha256').update(input.firmware.bytes)
  if (input.hashesTable) h.update(checkedHashesTable(input.firmware, input.hashesTable))
  return h.digest()
}

export function sevEsLaunchDigest(input: SevEsDigestInput): Buffer {
  if (!Number.isInteger(input.vcpus) || input.vcpus < 1) throw new InputError(`a guest has at least one vCPU, not ${input.vcpus}`, {hint: 'give --cpus as whole numbers from 1'})
  const apStart = sevEsResetAddress(input.firmware.bytes, input.firmware.file)
  const h = createHash('sha256').update(input.firmware.bytes)
  if (input.hashesTable) h.update(checkedHashesTable(input.firmware, input.hashesTable))
  const bsp = vmsaPage({startAddress: BSP_RESET_ADDRESS, cpuSignature: input.cpuSignature, form: input.form})
  const ap = vmsaPage({startAddress: apStart, cpuSignature: input.cpuSignature, form: input.form})
  for (let i = 0; i < input.vcpus; i++) h.update(i === 0 ? bsp : ap)
  return h.digest()
}

/** QEMU refuses a firmware whose hashes area is missing or smaller than the table. */
function checkedHashesTable(firmware: FirmwareImage, table: Buffer): Buffer {
  const area = sevHashesTableArea(firmware.bytes, firmware.file)
  if (area.size < PADDED_SEV_HASHES_TABLE_LENGTH) {
    throw new InputError(`${firmware.file}: the firmware's SEV hashes table area is ${area.size} bytes, smaller than the ${PADDED_SEV_HASHES_TABLE_LENGTH}-byte table QEMU writes there, so QEMU refuses the launch`, {
      hint: 'give an OvmfPkg/AmdSev build of OVMF with --firmware',
    })
  }
  return table
}
