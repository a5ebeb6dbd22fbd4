/**
 * The initial VMSA (VM save area) page of an SEV-ES vCPU as QEMU + KVM make it before
 * LAUNCH_UPDATE_VMSA measures it (docs/measurements.md "SEV-ES: the VMSA pages"). Offsets are those
 * of AMD's APM vol. 2, table B-4 (Linux: struct sev_es_save_area); values are what QEMU's x86 reset
 * gives a vCPU and what KVM's sev_es_sync_vmsa copies from it; for SEV-SNP (docs/measurements.md
 * "SEV-SNP"), the same page with the guest features in SEV_FEATURES, or EC2's and GCE's own start state.
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

/**
 * The VMMs whose SEV-SNP vCPU start state is known (docs/measurements.md "SEV-SNP"): QEMU + KVM
 * (KVM_SEV_INIT2, which SNP always uses), and the state AWS EC2's and Google GCE's hypervisors give.
 */
export const SNP_VMMS = ['qemu', 'ec2', 'gce'] as const
export type SnpVmm = (typeof SNP_VMMS)[number]

/** EC2 and GCE put a fixed signature in RDX, whatever the vCPU model. */
const FIXED_RDX = 0x600
/** the PAT MSR's reset value (APM vol. 2, A.3) */
const RESET_G_PAT = 0x0007040600070406n

/** The fields of a VMSA that differ between VMMs and KVM interfaces; the rest is x86's reset state. */
interface VmsaState {
  sevFeatures: bigint
  mxcsr: number
  fcw: number
  rdx: number
  csAttrib: number
  ssAttrib: number
  trAttrib: number
  gPat: bigint
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

/** One vCPU's SEV-ES VMSA page under QEMU + KVM, as measured. */
export function vmsaPage({startAddress, cpuSignature, form}: VmsaInput): Buffer {
  return vmsaBytes(startAddress, {...FORM_STATE[form], rdx: cpuSignature, csAttrib: 0x9b, ssAttrib: 0x93, trAttrib: 0x8b, gPat: RESET_G_PAT})
}

export interface SnpVmsaInput {
  /** BSP_RESET_ADDRESS for vCPU 0, the firmware's SEV-ES reset address for the others */
  startAddress: number
  /** CPUID 1 EAX of the vCPU model (QEMU only: EC2 and GCE put 0x600 in RDX) */
  cpuSignature: number
  /** the VMSA's SEV_FEATURES: the guest features the VMM asked for, SNPActive (bit 0) among them */
  guestFeatures: bigint
  vmm: SnpVmm
}

/** One vCPU's SEV-SNP VMSA page, as SNP_LAUNCH_UPDATE measures it. */
export function snpVmsaPage({startAddress, cpuSignature, guestFeatures, vmm}: SnpVmsaInput): Buffer {
  switch (vmm) {
    case 'qemu':
      // KVM_SEV_INIT2: KVM copies the reset x87/SSE state, as in the init2 SEV-ES form
      return vmsaBytes(startAddress, {sevFeatures: guestFeatures, mxcsr: 0x1f80, fcw: 0x37f, rdx: cpuSignature, csAttrib: 0x9b, ssAttrib: 0x93, trAttrib: 0x8b, gPat: RESET_G_PAT})
    case 'ec2':
      // EC2 starts the BSP with a non-accessed CS (0x9a), SS 0x92 and an available 32-bit TSS (0x83)
      return vmsaBytes(startAddress, {sevFeatures: guestFeatures, mxcsr: 0, fcw: 0, rdx: FIXED_RDX, csAttrib: startAddress === BSP_RESET_ADDRESS ? 0x9a : 0x9b, ssAttrib: 0x92, trAttrib: 0x83, gPat: RESET_G_PAT})
    case 'gce':
      // GCE's hypervisor writes its own PAT
      return vmsaBytes(startAddress, {sevFeatures: guestFeatures, mxcsr: 0, fcw: 0, rdx: FIXED_RDX, csAttrib: 0x9b, ssAttrib: 0x93, trAttrib: 0x8b, gPat: 0x00070106n})
  }
}

function vmsaBytes(startAddress: number, state: VmsaState): Buffer {
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
  segment(OFFSET.cs, 0xf000, state.csAttrib, 0xffff, (startAddress & 0xffff0000) >>> 0)
  segment(OFFSET.ss, 0, state.ssAttrib, 0xffff, 0)
  segment(OFFSET.ds, 0, 0x93, 0xffff, 0)
  segment(OFFSET.fs, 0, 0x93, 0xffff, 0)
  segment(OFFSET.gs, 0, 0x93, 0xffff, 0)
  segment(OFFSET.gdtr, 0, 0, 0xffff, 0)
  segment(OFFSET.idtr, 0, 0, 0xffff, 0)
  // LDT (0x82) and a busy 32-bit TSS (0x8b), as QEMU's reset sets them (EC2: an available one, 0x83)
  segment(OFFSET.ldtr, 0, 0x82, 0xffff, 0)
  segment(OFFSET.tr, 0, state.trAttrib, 0xffff, 0)

  const u64 = (at: number, v: bigint) => page.writeBigUInt64LE(v, at)
  u64(OFFSET.efer, 0x1000n) // EFER.SVME: KVM sets it in every SVM guest
  u64(OFFSET.cr4, 0x40n) // CR4.MCE: KVM sets it
  u64(OFFSET.cr0, 0x10n) // CR0.ET
  u64(OFFSET.dr7, 0x400n)
  u64(OFFSET.dr6, 0xffff0ff0n)
  u64(OFFSET.rflags, 0x2n)
  u64(OFFSET.rip, BigInt(startAddress & 0xffff))
  u64(OFFSET.gPat, state.gPat)
  u64(OFFSET.rdx, BigInt(state.rdx >>> 0))
  u64(OFFSET.sevFeatures, state.sevFeatures)
  u64(OFFSET.xcr0, 0x1n)
  page.writeUInt32LE(state.mxcsr, OFFSET.mxcsr)
  page.writeUInt16LE(state.fcw, OFFSET.x87Fcw)
  return page
}
