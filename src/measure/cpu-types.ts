import {InputError} from '../errors.js'

/**
 * The vCPU's CPUID signature, which QEMU puts in EDX at reset (x86_cpu_reset: EDX = the model's
 * CPUID 1 EAX) and KVM copies into each SEV-ES VMSA. AMD's encoding (CPUID Specification #25481,
 * Fn0000_0001_EAX): stepping [3:0], model [7:4], family [11:8] (at most 0xF), extended model
 * [19:16], extended family [27:20] (family - 0xF).
 */
export function cpuSignature(family: number, model: number, stepping: number): number {
  const baseFamily = Math.min(family, 0xf)
  const extFamily = family > 0xf ? (family - 0xf) & 0xff : 0
  return ((extFamily << 20) | (((model >> 4) & 0xf) << 16) | (baseFamily << 8) | ((model & 0xf) << 4) | (stepping & 0xf)) >>> 0
}

/** QEMU's AMD EPYC models (target/i386/cpu.c builtin_x86_defs) and the family/model/stepping each reports. */
const EPYC_MODELS: Record<string, [family: number, model: number, stepping: number]> = {
  EPYC: [23, 1, 2],
  'EPYC-v1': [23, 1, 2],
  'EPYC-v2': [23, 1, 2],
  'EPYC-IBPB': [23, 1, 2],
  'EPYC-v3': [23, 1, 2],
  'EPYC-v4': [23, 1, 2],
  'EPYC-Rome': [23, 49, 0],
  'EPYC-Rome-v1': [23, 49, 0],
  'EPYC-Rome-v2': [23, 49, 0],
  'EPYC-Rome-v3': [23, 49, 0],
  'EPYC-Milan': [25, 1, 1],
  'EPYC-Milan-v1': [25, 1, 1],
  'EPYC-Milan-v2': [25, 1, 1],
  'EPYC-Genoa': [25, 17, 0],
  'EPYC-Genoa-v1': [25, 17, 0],
  'EPYC-Turin': [26, 0, 0],
}
export const CPU_TYPE_NAMES: readonly string[] = Object.keys(EPYC_MODELS)
export const DEFAULT_CPU_TYPE = 'EPYC-v4'

export interface CpuType {
  /** as given: a QEMU model name, family/model/stepping, or a signature in hex */
  name: string
  signature: number
}

/**
 * A --cpu-type value: a QEMU model name (EPYC-v4, EPYC-Milan, ...), "family/model/stepping" in
 * decimal (for `-cpu host`: the host's /proc/cpuinfo "cpu family", "model", "stepping"), or the
 * CPUID 1 EAX signature in hex (0x00a00f11).
 */
export function parseCpuType(spec: string): CpuType {
  const named = EPYC_MODELS[spec]
  if (named) return {name: spec, signature: cpuSignature(...named)}
  const fms = /^(\d+)\/(\d+)\/(\d+)$/.exec(spec)
  if (fms) {
    const [family, model, stepping] = fms.slice(1).map(Number)
    if (family <= 0xff + 0xf && model <= 0xff && stepping <= 0xf) return {name: spec, signature: cpuSignature(family, model, stepping)}
  }
  if (/^0x[0-9a-f]{1,8}$/i.test(spec)) return {name: spec, signature: Number.parseInt(spec, 16) >>> 0}
  throw new InputError(`unknown vCPU type "${spec}"`, {
    details: [`known QEMU models: ${CPU_TYPE_NAMES.join(', ')}`],
    hint: 'give a model name, family/model/stepping in decimal (e.g. 25/1/1; for -cpu host, the host\'s /proc/cpuinfo values), or the CPUID 1 EAX signature in hex (e.g. 0x00a00f11)',
  })
}
