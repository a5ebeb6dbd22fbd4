/**
 * The initial VMSA (VM save area) page of an SEV-ES vCPU as QEMU + KVM make it before
 * LAUNCH_UPDATE_VMSA measures it (docs/measurements.md "SEV-ES: the VMSA pages"). Offsets are those
 * of AMD's APM vol. 2, table B-4 (Linux: struct sev_es_save_area); values are what QEMU's x86 reset
 * gives a vCPU and what KVM's sev_es_sync_vmsa copies from it.
 */

export const VMSA_PAGE_SIZE = 4096

/**
 * What differs between KVMs (the VMM's "VMSA defaults"):
 * - legacy: KVM_SEV_ES_INIT. QEMU up to 9.0 on any host, QEMU 9.1 and later with sev-guest
 *   legacy-vm-type=auto (its default) or on, any host before Linux 6.10 (but see legacy-debug-swap).
 *   The x87/SSE state is left zero, SEV features 0.
 * - legacy-debug-swap: KVM_SEV_ES_INIT on a host whose kvm_amd set DebugSwap in every SEV-ES VMSA:
 *   Linux 6.5 to 6.7 on CPUs with DebugSwap (kvm_amd debug_swap defaulted on), or 6.8/6.9 loaded with
 *   kvm_amd.debug_swap=1. SEV features 0x20.
 * - init2: KVM_SEV_INIT2 (QEMU 9.1 and later with legacy-vm-type=off, on Linux 6.10 and later): KVM
 *   also copies the vCPU's reset x87/SSE state, MXCSR 0x1f80 and FCW 0x37f. SEV features 0 (what QEMU
 *   asks for).
 */
export const VMSA_FORMS = ['legacy', 'legacy-debug-swap', 'init2'] as const
export type VmsaForm = (typeof VMSA_FORMS)[number]

export const VMSA_FORM_DESCRIPTIONS: Record<VmsaForm, string> = {
  legacy: 'KVM_SEV_ES_INIT: QEMU <= 9.0, or QEMU >= 9.1 with legacy-vm-type auto (the default) or on; x87/SSE state zero, SEV features 0 (Debian 12: Linux 6.1, QEMU 7.2)',
  'legacy-debug-swap': 'KVM_SEV_ES_INIT on Linux 6.5 to 6.7 with a DebugSwap-capable CPU (or 6.8/6.9 with kvm_amd.debug_swap=1): SEV features 0x20 (DebugSwap)',
  init2: 'KVM_SEV_INIT2: QEMU >= 9.1 with legacy-vm-type=off on Linux >= 6.10; MXCSR 0x1f80 and FCW 0x37f, SEV features 0',
}

const FORM_STATE: Record<VmsaForm, {sevFeatures: bigint; mxcsr: number; fcw: number}> = {
  legacy: {sevFeatures: 0n, mxcsr: 0, fcw: 0},
  'legacy-debug-swap': {sevFeatures: 0x20n, mxcsr: 0, fcw: 0},
  init2: {sevFeatures: 0n, mxcsr: 0x1f80, fcw: 0x37f},
}

/** Where x86 starts the bootstrap processor: CS base 0xffff0000, IP 0xfff0. */
export const BSP_RESET_ADDRESS = 0xfffffff0

const OFFSET = {
  es: 0x000,
  cs: 0x010,
  ss: 0x020,
  ds: 0x030,
  fs: 0x040,
  gs: 0x050,
  gdtr: 0x060,
  ldtr: 0x070,
  idtr: 0x080,
  tr: 0x090,
  efer: 0x0d0,
  cr4: 0x148,
  cr0: 0x158,
  dr7: 0x160,
  dr6: 0x168,
  rflags: 0x170,
  rip: 0x178,
  gPat: 0x268,
  rdx: 0x310,
  sevFeatures: 0x3b0,
  xcr0: 0x3e8,
  mxcsr: 0x408,
  x87Fcw: 0x410,
} as const

export interface VmsaInput {
  /** where this vCPU starts: BSP_RESET_ADDRESS for vCPU 0, the firmware's SEV-ES reset address for the others */
  startAddress: number
  /** CPUID 1 EAX of the vCPU model (cpu-types.ts) */
  cpuSignature: number
  form: VmsaForm
}

/** One vCPU's VMSA page, as measured. */
export function vmsaPage({startAddress, cpuSignature, form}: VmsaInput): Buffer {
  const page = Buffer.alloc(VMSA_PAGE_SIZE)
  // a segment register: u16 selector, u16 attributes, u32 limit, u64 base
  const segment = (at: number, selector: number, attrib: number, limit: number, base: number) => {
    page.writeUInt16LE(selector, at)
    page.writeUInt16LE(attrib, at + 2)
    page.writeUInt32LE(limit, at + 4)
    page.writeBigUInt64LE(BigInt(base), at + 8)
  }
  // real mode at reset: data segments present, writable, accessed (0x93); CS present, readable code, accessed (0x9b)
  segment(OFFSET.es, 0, 0x93, 0xffff, 0)
  segment(OFFSET.cs, 0xf000, 0x9b, 0xffff, (startAddress & 0xffff0000) >>> 0)
  segment(OFFSET.ss, 0, 0x93, 0xffff, 0)
  segment(OFFSET.ds, 0, 0x93, 0xffff, 0)
  segment(OFFSET.fs, 0, 0x93, 0xffff, 0)
  segment(OFFSET.gs, 0, 0x93, 0xffff, 0)
  segment(OFFSET.gdtr, 0, 0, 0xffff, 0)
  segment(OFFSET.idtr, 0, 0, 0xffff, 0)
  // LDT (0x82) and a busy 32-bit TSS (0x8b), as QEMU's reset sets them
  segment(OFFSET.ldtr, 0, 0x82, 0xffff, 0)
  segment(OFFSET.tr, 0, 0x8b, 0xffff, 0)

  const u64 = (at: number, v: bigint) => page.writeBigUInt64LE(v, at)
  const state = FORM_STATE[form]
  u64(OFFSET.efer, 0x1000n) // EFER.SVME: KVM sets it in every SVM guest
  u64(OFFSET.cr4, 0x40n) // CR4.MCE: KVM sets it
  u64(OFFSET.cr0, 0x10n) // CR0.ET
  u64(OFFSET.dr7, 0x400n)
  u64(OFFSET.dr6, 0xffff0ff0n)
  u64(OFFSET.rflags, 0x2n)
  u64(OFFSET.rip, BigInt(startAddress & 0xffff))
  u64(OFFSET.gPat, 0x0007040600070406n) // the PAT MSR's reset value (APM vol. 2, A.3)
  u64(OFFSET.rdx, BigInt(cpuSignature >>> 0))
  u64(OFFSET.sevFeatures, state.sevFeatures)
  u64(OFFSET.xcr0, 0x1n)
  page.writeUInt32LE(state.mxcsr, OFFSET.mxcsr)
  page.writeUInt16LE(state.fcw, OFFSET.x87Fcw)
  return page
}
