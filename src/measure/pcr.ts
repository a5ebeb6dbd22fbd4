import {createHash} from 'node:crypto'
import {readFile} from 'node:fs/promises'

import {InputError} from '../errors.js'
import {authenticodeSha256} from './authenticode.js'
import {PE_MACHINE_X86_64, PE_SUBSYSTEM_EFI_APPLICATION, parsePe, sectionInMemory, type PeSectionHeader} from '../disk/pe.js'

/**
 * Expected TPM PCR values (SHA-256 bank) for a disk whose ESP holds our UKI at
 * \EFI\BOOT\BOOTX64.EFI: PCR 11 (what systemd-stub 252 measures of the UKI's sections) and PCR 4
 * (what UEFI firmware measures of the boot application, and of the kernel the stub loads).
 * What each value assumes, and which source it was read from: docs/pcr-measurements.md.
 */

export const PCR_BANK = 'sha256'

/** one measurement: the digest the TPM extends the PCR with, and what the event log calls it */
export interface PcrEvent {
  pcr: number
  /** the TCG event type of its entry in the firmware's event log; null: extended from userspace, with no such entry */
  type: 'EV_IPL' | 'EV_EFI_ACTION' | 'EV_SEPARATOR' | 'EV_EFI_BOOT_SERVICES_APPLICATION' | 'EV_EFI_VARIABLE_DRIVER_CONFIG' | 'EV_EFI_VARIABLE_AUTHORITY' | null
  /** what was measured, in words */
  what: string
  /** the event's SHA-256 digest, lowercase hex */
  digest: string
}

export interface PcrPrediction {
  pcr: number
  bank: typeof PCR_BANK
  /** the PCR's value after the events, from all zeros, lowercase hex */
  value: string
  events: PcrEvent[]
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest()

/** TPM2_PCR_Extend in the SHA-256 bank: the new value is SHA-256(old value || digest). */
export function extendPcr(value: Buffer, digest: Buffer): Buffer {
  if (value.length !== 32 || digest.length !== 32) throw new TypeError('a SHA-256 PCR value and digest are 32 bytes each')
  return sha256(Buffer.concat([value, digest]))
}

/** The PCR's value after the events, from all zeros (a PCR's value at reset). */
export function replayPcr(pcr: number, events: PcrEvent[]): PcrPrediction {
  let value: Buffer = Buffer.alloc(32)
  for (const e of events) {
    if (e.pcr !== pcr) throw new TypeError(`an event of PCR ${e.pcr} replayed into PCR ${pcr}`)
    value = extendPcr(value, Buffer.from(e.digest, 'hex'))
  }
  return {pcr, bank: PCR_BANK, value: value.toString('hex'), events}
}

// ---- PCR 11: systemd-stub ----

export const PCR_KERNEL_IMAGE = 11

/**
 * The UKI sections systemd-stub 252 knows, in the order it measures them (src/fundamental/tpm-pcr.h
 * UnifiedSection: "the canonical order in which we measure the sections into TPM PCR 11").
 */
export const UKI_SECTIONS = ['.linux', '.osrel', '.cmdline', '.initrd', '.splash', '.dtb', '.pcrsig', '.pcrpkey'] as const
export type UkiSection = (typeof UKI_SECTIONS)[number]
/** unified_section_measure(): the signature of the expected PCR values is no input to them */
const UNMEASURED: ReadonlySet<UkiSection> = new Set(['.pcrsig'])

export type UkiSectionData = Partial<Record<UkiSection, Buffer>>

/**
 * systemd-stub 252's PCR 11 events: for each section of UKI_SECTIONS present and not empty, in that
 * order, two EV_IPL events: the section name with its NUL, then the section's bytes.
 */
export function pcr11Events(sections: UkiSectionData): PcrEvent[] {
  const events: PcrEvent[] = []
  for (const name of UKI_SECTIONS) {
    const data = sections[name]
    if (UNMEASURED.has(name) || !data || data.length === 0) continue
    events.push({pcr: PCR_KERNEL_IMAGE, type: 'EV_IPL', what: `section name ${name}\\0`, digest: sha256(Buffer.from(`${name}\0`, 'latin1')).toString('hex')})
    events.push({pcr: PCR_KERNEL_IMAGE, type: 'EV_IPL', what: `section ${name} (${data.length} bytes)`, digest: sha256(data).toString('hex')})
  }
  return events
}

/** PCR 11 as systemd-stub 252 leaves it, from the UKI's section contents. */
export function predictPcr11(sections: UkiSectionData): PcrPrediction {
  return replayPcr(PCR_KERNEL_IMAGE, pcr11Events(sections))
}

/**
 * The UKI's sections as systemd-stub 252 finds and measures them (src/boot/efi/pe.c
 * pe_memory_locate_sections, in the image the firmware loaded):
 * - a section header counts as a known section when its 8-byte name field starts with that name
 *   (memcmp over the name's length), and a later header replaces an earlier one;
 * - its bytes are VirtualSize bytes at its VirtualAddress in memory: the raw data cut to
 *   VirtualSize, or zero-filled up to it when VirtualSize is larger than SizeOfRawData;
 * - VirtualSize 0 is a section not found.
 * A measured section whose memory overlaps another section's is refused: what the stub would
 * measure then depends on the loader's copy order.
 */
export function stubSections(image: Buffer, what = 'the UKI'): UkiSectionData {
  const pe = parsePe(image, what)
  // verify_pe(): the stub finds nothing in an image of another machine type or with no sections
  if (pe.machine !== PE_MACHINE_X86_64) throw new InputError(`${what} is not an x86-64 PE image (machine 0x${pe.machine.toString(16)})`)
  if (pe.numberOfSections === 0 || pe.numberOfSections > 96) throw new InputError(`${what} has ${pe.numberOfSections} sections: systemd-stub reads 1 to 96`)
  const found = new Map<UkiSection, PeSectionHeader>()
  for (const s of pe.sections) {
    for (const name of UKI_SECTIONS) {
      if (s.rawName.subarray(0, name.length).equals(Buffer.from(name, 'latin1'))) found.set(name, s)
    }
  }
  const out: UkiSectionData = {}
  for (const [name, s] of found) {
    if (s.virtualSize === 0) continue
    if (!UNMEASURED.has(name)) {
      const end = s.virtualAddress + s.virtualSize
      const other = pe.sections.find((o) => o !== s && o.virtualAddress < end && s.virtualAddress < o.virtualAddress + (o.virtualSize || o.sizeOfRawData))
      if (other) throw new InputError(`${what}: section ${s.name} (0x${s.virtualAddress.toString(16)}+0x${s.virtualSize.toString(16)}) overlaps section ${other.name} in memory`, {hint: 'give each UKI section its own address range (docs/design.md "The unified kernel image")'})
    }
    out[name] = sectionInMemory(image, s, what)
  }
  // the stub stops before it measures anything ("Unable to locate embedded .linux section")
  if (!out['.linux']) throw new InputError(`${what} has no .linux section: systemd-stub would refuse to boot it`, {hint: 'a UKI is the stub with the kernel added as .linux (docs/design.md "The unified kernel image")'})
  return out
}

/** PCR 11 for the UKI file at ukiPath, as systemd-stub 252 measures it when it boots. */
export async function predictPcr11FromUki(ukiPath: string): Promise<PcrPrediction> {
  return predictPcr11(stubSections(await readFile(ukiPath), ukiPath))
}

/**
 * PCR 11 after the boot phases systemd-pcrphase extends it with once the system runs (each word
 * hashed without a NUL, as `systemd-measure calculate --phase=` counts them). A Debian 12 guest
 * with a TPM whose initrd has no systemd passes `sysinit` then `ready` (docs/pcr-measurements.md).
 */
export function extendPcr11Phases(prediction: PcrPrediction, phases: readonly string[]): PcrPrediction {
  if (prediction.pcr !== PCR_KERNEL_IMAGE) throw new TypeError(`boot phases extend PCR ${PCR_KERNEL_IMAGE}, not PCR ${prediction.pcr}`)
  const events = [...prediction.events]
  for (const word of phases) {
    if (!word) continue
    events.push({pcr: PCR_KERNEL_IMAGE, type: null, what: `boot phase ${word}`, digest: sha256(Buffer.from(word, 'utf8')).toString('hex')})
  }
  return replayPcr(PCR_KERNEL_IMAGE, events)
}

// ---- PCR 4: UEFI firmware (edk2 / OVMF) ----

export const PCR_BOOT_MANAGER_CODE = 4
/** edk2 Tcg2Dxe OnReadyToBoot's actions (hashed without their NUL): before each boot option it tries */
export const EFI_CALLING_EFI_APPLICATION = 'Calling EFI Application from Boot Option'
/** ... and, from the second boot option on, first this one */
export const EFI_RETURNING_FROM_EFI_APPLICATION = 'Returning from EFI Application from Boot Option'

export interface Pcr4Options {
  /**
   * UEFI Secure Boot is on: systemd-stub then vouches for its own kernel (its security override
   * answers for it), so firmware does not measure the kernel. Default false, as OVMF_CODE_4M.fd
   * boots in validation. Firmware with Secure Boot boots a signed UKI only: predict from the signed
   * file, whose digest differs from the unsigned one's by the padding signing adds.
   */
  secureBoot?: boolean
  /**
   * How many boot options the firmware tried before this disk's (each one, even one with no boot
   * file, adds "Returning from ..." and "Calling ..." at the next). Default 0: the disk's is the
   * first boot option, as when it has bootindex=0 or is the only bootable device.
   */
  earlierBootAttempts?: number
}

/**
 * How systemd-stub 252 (Debian 12's 252.39) starts the kernel in .linux (src/boot/efi/linux.c
 * linux_exec, pe.c pe_kernel_info): a PE kernel whose MajorImageVersion is 1 or more (Linux 5.8
 * and later: the initrd by LINUX_INITRD_MEDIA_GUID) through the firmware's LoadImage and
 * StartImage; an older one through the EFI handover protocol, which firmware does not see.
 */
export function stubKernelStart(linux: Buffer, what = 'the kernel in .linux'): 'load-image' | 'handover' {
  let pe
  try {
    pe = parsePe(linux, what)
  } catch (err) {
    throw new InputError(`${what} is no PE image: systemd-stub would refuse to start it ("Bad kernel image")`, {cause: err})
  }
  if (pe.machine !== PE_MACHINE_X86_64 || pe.numberOfSections === 0 || pe.numberOfSections > 96) {
    throw new InputError(`${what} is no x86-64 PE image with 1 to 96 sections: systemd-stub would refuse to start it ("Bad kernel image")`)
  }
  return pe.majorImageVersion < 1 ? 'handover' : 'load-image'
}

/**
 * The PCR 4 events of a boot of \EFI\BOOT\BOOTX64.EFI holding this UKI. They assume edk2's
 * standard measurements (OVMF built with TPM 2.0 support, a TPM present, nothing else started from
 * a boot option before: no UEFI shell, no boot menu):
 * 1. EV_EFI_ACTION "Calling EFI Application from Boot Option" (Tcg2Dxe, at the first ReadyToBoot,
 *    which BDS signals before it loads a boot option's file);
 * 2. EV_SEPARATOR, 4 zero bytes (the same ReadyToBoot: the line between pre-boot and the OS);
 * 3. for each boot option tried before this disk's (opts.earlierBootAttempts): EV_EFI_ACTION
 *    "Returning from EFI Application from Boot Option", then "Calling ..." again;
 * 4. EV_EFI_BOOT_SERVICES_APPLICATION: the Authenticode SHA-256 of the UKI, as LoadImage is given
 *    the file (DxeTpm2MeasureBootLib, for an image that is an EFI application);
 * 5. with Secure Boot off and a kernel systemd-stub starts by LoadImage (stubKernelStart):
 *    EV_EFI_BOOT_SERVICES_APPLICATION, the Authenticode SHA-256 of the kernel (.linux as it lies in
 *    memory). With Secure Boot on, the stub's security override answers for its own kernel before
 *    the firmware's handlers, the measuring one included, see it.
 * A firmware whose PCR 4 holds other events, or none of these (no TPM), gives another value.
 */
export function pcr4Events(uki: Buffer, opts: Pcr4Options = {}, what = 'the UKI'): PcrEvent[] {
  const pe = parsePe(uki, what)
  if (pe.subsystem !== PE_SUBSYSTEM_EFI_APPLICATION) throw new InputError(`${what} has PE subsystem ${pe.subsystem}, not an EFI application (10): firmware does not measure it into PCR 4`)
  const events: PcrEvent[] = [
    {pcr: PCR_BOOT_MANAGER_CODE, type: 'EV_EFI_ACTION', what: EFI_CALLING_EFI_APPLICATION, digest: sha256(EFI_CALLING_EFI_APPLICATION).toString('hex')},
    {pcr: PCR_BOOT_MANAGER_CODE, type: 'EV_SEPARATOR', what: 'separator (00000000)', digest: sha256(Buffer.alloc(4)).toString('hex')},
  ]
  const attempts = opts.earlierBootAttempts ?? 0
  if (!Number.isInteger(attempts) || attempts < 0) throw new InputError(`earlier boot attempts must be a whole number of 0 or more, not ${attempts}`)
  for (let i = 0; i < attempts; i++) {
    for (const action of [EFI_RETURNING_FROM_EFI_APPLICATION, EFI_CALLING_EFI_APPLICATION]) {
      events.push({pcr: PCR_BOOT_MANAGER_CODE, type: 'EV_EFI_ACTION', what: action, digest: sha256(action).toString('hex')})
    }
  }
  events.push(
    {pcr: PCR_BOOT_MANAGER_CODE, type: 'EV_EFI_BOOT_SERVICES_APPLICATION', what: 'the UKI (\\EFI\\BOOT\\BOOTX64.EFI), Authenticode SHA-256', digest: authenticodeSha256(uki, what).toString('hex')},
  )
  const linux = stubSections(uki, what)['.linux'] as Buffer
  const kernelWhat = `the kernel in ${what}'s .linux section`
  if (stubKernelStart(linux, kernelWhat) === 'load-image' && !opts.secureBoot) {
    // edk2 measures an image LoadImage is given into PCR 4 only when it is an EFI application
    if (parsePe(linux, kernelWhat).subsystem === PE_SUBSYSTEM_EFI_APPLICATION) {
      events.push({pcr: PCR_BOOT_MANAGER_CODE, type: 'EV_EFI_BOOT_SERVICES_APPLICATION', what: 'the kernel (.linux), loaded by systemd-stub with LoadImage, Authenticode SHA-256', digest: authenticodeSha256(linux, kernelWhat).toString('hex')})
    }
  }
  return events
}

/** PCR 4 after firmware has started the UKI and the UKI its kernel (the events of pcr4Events). */
export function predictPcr4(uki: Buffer, opts: Pcr4Options = {}, what = 'the UKI'): PcrPrediction {
  return replayPcr(PCR_BOOT_MANAGER_CODE, pcr4Events(uki, opts, what))
}

/** predictPcr4 for the UKI file at ukiPath. */
export async function predictPcr4FromUki(ukiPath: string, opts: Pcr4Options = {}): Promise<PcrPrediction> {
  return predictPcr4(await readFile(ukiPath), opts, ukiPath)
}
