import {createHash} from 'node:crypto'
import {open} from 'node:fs/promises'

import {InputError} from '../errors.js'
import {parseCpuType} from './cpu-types.js'
import type {MeasurementEntry, MeasurementInput} from './entry.js'
import {sevEsResetAddress} from './ovmf-footer.js'
import {snpLaunchDigest, snpSections} from './snp.js'
import {kernelLoaderHashes, sevHashesTable, type KernelBoot} from './sev-hashes.js'
import {sevEsLaunchDigest, sevLaunchDigest, type FirmwareImage} from './sev.js'
import {VMSA_FORM_DESCRIPTIONS, type SnpVmm, type VmsaForm} from './vmsa.js'

export const SEV_MODES = ['sev', 'sev-es'] as const
export type SevMode = (typeof SEV_MODES)[number]
/** every launch digest `measure --mode` gives: SEV and SEV-ES (SHA-256), SEV-SNP (SHA-384) */
export const LAUNCH_MODES = [...SEV_MODES, 'snp'] as const
export type LaunchMode = (typeof LAUNCH_MODES)[number]
/** SNPActive alone: the SEV features QEMU asks KVM for (sev-snp-guest without feature options) */
export const DEFAULT_SNP_GUEST_FEATURES = 0x1n

/** QEMU maps at most 8 MiB of flash below 4 GiB (hw/i386/pc_sysfw.c): a larger file is not a firmware QEMU would load. */
const FIRMWARE_MAX_BYTES = 8 * 1024 * 1024

export interface LaunchMeasureOptions {
  /** OVMF code images, as QEMU gets them (pflash unit 0 or -bios) */
  firmware: string[]
  modes: readonly LaunchMode[]
  /** the firmware of the SEV-SNP digests (QEMU -bios) [default: firmware] */
  snpFirmware?: string[]
  /** SEV-SNP: the SEV features of every VMSA (--guest-features) [default: DEFAULT_SNP_GUEST_FEATURES] */
  guestFeatures?: readonly bigint[]
  /** SEV-SNP: the VMMs whose vCPU start state is measured [default: qemu] */
  vmms?: readonly SnpVmm[]
  /** vCPU counts (SEV-ES, SEV-SNP) */
  cpus: readonly number[]
  /** --cpu-type values (cpu-types.ts) */
  cpuTypes: readonly string[]
  vmsaForms: readonly VmsaForm[]
  /** a measured direct boot (-kernel with kernel-hashes=on) instead of a disk boot */
  kernelBoot?: KernelBoot
}

/**
 * Every launch digest of the combinations asked for: per firmware, one SEV digest, and one SEV-ES
 * digest per vCPU count, vCPU type and VMSA form; per SNP firmware, one SEV-SNP digest per vCPU
 * count, vCPU type (QEMU's only: EC2 and GCE fix the vCPUs' signature), guest features and VMM.
 * Bad input (a flag, a firmware that cannot launch in a mode) fails before anything is computed.
 */
export async function launchMeasurements(opts: LaunchMeasureOptions): Promise<MeasurementEntry[]> {
  const cpuTypes = opts.cpuTypes.map(parseCpuType)
  for (const n of opts.cpus) {
    if (!Number.isInteger(n) || n < 1) throw new InputError(`--cpus ${n}: a vCPU count is a whole number from 1`, {hint: 'give --cpus as a list such as 1,2,4'})
  }
  const boot = opts.kernelBoot
  const hashes = boot ? await kernelLoaderHashes(boot) : undefined
  const table = hashes ? sevHashesTable(hashes) : undefined
  const bootParams: Record<string, string> = boot && hashes
    ? {kernel: boot.kernel, kernelSha256: hashes.kernel.toString('hex'), initrd: boot.initrd ?? '(none)', initrdSha256: hashes.initrd.toString('hex'), cmdline: boot.append ?? ''}
    : {}
  const bootInputs: MeasurementInput[] = boot ? ['kernel', 'initrd', 'cmdline'] : []
  const what = boot ? 'a measured direct boot: binds the firmware, kernel, initrd and command line' : 'a disk boot: binds the firmware, not the disk'

  const firmwares = new Map<string, FirmwareImage>()
  const read = async (path: string) => firmwares.get(path) ?? firmwares.set(path, await readFirmware(path)).get(path)!
  const fwParams = (firmware: FirmwareImage) => ({firmware: firmware.file, firmwareSha256: createHash('sha256').update(firmware.bytes).digest('hex')})
  const snpFirmware = opts.modes.includes('snp') ? [...new Set(opts.snpFirmware ?? opts.firmware)] : []
  const guestFeatures = opts.guestFeatures ?? [DEFAULT_SNP_GUEST_FEATURES]
  // an SNP firmware that cannot launch is refused before any digest
  for (const path of snpFirmware) {
    const firmware = await read(path)
    snpSections(firmware, table)
    sevEsResetAddress(firmware.bytes, firmware.file)
  }
  for (const gf of guestFeatures) checkGuestFeatures(gf)

  const entries: MeasurementEntry[] = []
  const sevModes = opts.modes.filter((m) => m !== 'snp')
  for (const path of sevModes.length ? [...new Set(opts.firmware)] : []) {
    const firmware = await read(path)
    if (opts.modes.includes('sev')) {
      entries.push({
        kind: 'sev-launch',
        value: sevLaunchDigest({firmware, hashesTable: table}).toString('hex'),
        algorithm: 'sha256',
        dependsOn: ['firmware', ...bootInputs],
        params: {...fwParams(firmware), ...bootParams},
        description: `SEV launch digest of ${what}; LAUNCH_MEASURE reports it inside an HMAC keyed with the guest owner's TIK`,
      })
    }
    if (!opts.modes.includes('sev-es')) continue
    const apStart = sevEsResetAddress(firmware.bytes, firmware.file)
    for (const vcpus of opts.cpus) {
      for (const cpu of cpuTypes) {
        for (const form of opts.vmsaForms) {
          entries.push({
            kind: 'sev-es-launch',
            value: sevEsLaunchDigest({firmware, hashesTable: table, vcpus, cpuSignature: cpu.signature, form}).toString('hex'),
            algorithm: 'sha256',
            dependsOn: ['firmware', ...bootInputs, 'vcpus', 'cpu-signature', 'vmsa-form'],
            params: {
              ...fwParams(firmware),
              ...bootParams,
              vcpus,
              cpuType: cpu.name,
              cpuSignature: hex32(cpu.signature),
              apResetAddress: hex32(apStart),
              vmsaForm: form,
              vmsaFormMeans: VMSA_FORM_DESCRIPTIONS[form],
            },
            description: `SEV-ES launch digest of ${what}, and ${vcpus} vCPU${vcpus === 1 ? '' : 's'} ${cpu.name} started by ${vmsaFormKvm(form)}; LAUNCH_MEASURE reports it inside an HMAC keyed with the guest owner's TIK`,
          })
        }
      }
    }
  }
  for (const path of snpFirmware) {
    const firmware = await read(path)
    const apStart = sevEsResetAddress(firmware.bytes, firmware.file)
    const sections = snpSections(firmware, table).map((x) => `${x.type} 0x${x.gpa.toString(16)}+0x${x.size.toString(16)}`).join(', ')
    for (const vmm of opts.vmms ?? ['qemu']) {
      // EC2 and GCE put a fixed signature in every vCPU: one entry, whatever --cpu-type says
      const cpus = vmm === 'qemu' ? cpuTypes : [undefined]
      for (const vcpus of opts.cpus) {
        for (const cpu of cpus) {
          for (const gf of guestFeatures) {
            entries.push({
              kind: 'snp-launch',
              value: snpLaunchDigest({firmware, hashesTable: table, vcpus, cpuSignature: cpu?.signature ?? 0, guestFeatures: gf, vmm}).toString('hex'),
              algorithm: 'sha384',
              dependsOn: ['firmware', ...bootInputs, 'vcpus', ...(cpu ? (['cpu-signature'] as const) : []), 'guest-features', 'vmm'],
              params: {
                ...fwParams(firmware),
                ...bootParams,
                vcpus,
                ...(cpu ? {cpuType: cpu.name, cpuSignature: hex32(cpu.signature)} : {cpuSignature: `0x00000600 (fixed by ${vmm})`}),
                guestFeatures: `0x${gf.toString(16)}`,
                vmm,
                apResetAddress: hex32(apStart),
                sevMetadata: sections,
              },
              description: `SEV-SNP launch digest of ${what}, and ${vcpus} vCPU${vcpus === 1 ? '' : 's'}${cpu ? ` ${cpu.name}` : ''} with SEV features 0x${gf.toString(16)} started by ${VMM_NAMES[vmm]}; the MEASUREMENT field of the guest's attestation report`,
            })
          }
        }
      }
    }
  }
  return entries
}

const VMM_NAMES: Record<SnpVmm, string> = {qemu: 'QEMU + KVM', ec2: 'AWS EC2', gce: 'Google GCE'}

/** SEV_FEATURES of an SNP guest: SNPActive (bit 0) set, within 64 bits. */
function checkGuestFeatures(gf: bigint): void {
  if (gf < 0n || gf >= 1n << 64n || (gf & 1n) === 0n) {
    throw new InputError(`--guest-features 0x${gf.toString(16)}: an SEV-SNP guest's SEV features have SNPActive (bit 0) set and fit in 64 bits`, {
      hint: `give them in hex, e.g. 0x1 (SNPActive, QEMU's default) or 0x21 (SNPActive and DebugSwap)`,
    })
  }
}

async function readFirmware(path: string): Promise<FirmwareImage> {
  let fh
  try {
    fh = await open(path, 'r')
    const st = await fh.stat()
    if (!st.isFile()) throw new InputError(`firmware ${path} is not a file`, {hint: 'give the OVMF code image with --firmware'})
    if (st.size > FIRMWARE_MAX_BYTES) {
      throw new InputError(`firmware ${path} is ${st.size} bytes: QEMU maps at most ${FIRMWARE_MAX_BYTES} bytes of flash, so this is not a firmware image it would load`, {
        hint: 'give the OVMF code image (OVMF_CODE*.fd, a few MiB) with --firmware, not a disk',
      })
    }
    return {file: path, bytes: await fh.readFile()}
  } catch (e) {
    if (e instanceof InputError) throw e
    throw new InputError(`cannot read firmware ${path}: ${(e as Error).message}`, {hint: 'give the OVMF code image QEMU loads (pflash unit 0) with --firmware'})
  } finally {
    await fh?.close()
  }
}

function hex32(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`
}

function vmsaFormKvm(form: VmsaForm): string {
  return form === 'init2' ? 'KVM_SEV_INIT2' : form === 'legacy' ? 'KVM_SEV_ES_INIT' : 'KVM_SEV_ES_INIT with DebugSwap'
}
