import {createHash} from 'node:crypto'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {UKI_ESP_PATH} from '../disk/image.js'
import {parsePe} from '../disk/pe.js'
import {extractUki} from '../validate/uki.js'
import type {MeasurementEntry} from './entry.js'
import {extendPcr11Phases, predictPcr11, predictPcr4, stubSections, type PcrPrediction} from './pcr.js'

/**
 * The words systemd-pcrphase extends PCR 11 with on a system booted without an initrd from a UKI
 * (Debian 12's systemd-pcrphase-sysinit.service and systemd-pcrphase.service; they run only with a
 * TPM and when the stub measured: ConditionSecurity=tpm2, the StubPcrKernelImage EFI variable).
 */
export const BOOTED_PHASES = ['sysinit', 'ready'] as const

/**
 * The TPM PCR predictions of a disk cvm-image assembled, as measurement entries: PCR 11 (systemd-stub's
 * measurements of the UKI's sections: the UKI alone decides it) and PCR 4 (the firmware's boot
 * application chain: the UKI plus edk2's standard events, the disk being the first boot option),
 * with Secure Boot off, and for a signed UKI PCR 4 with Secure Boot on as well. docs/pcr-measurements.md.
 */
export async function pcrMeasurements(disk: string): Promise<MeasurementEntry[]> {
  const dir = await mkdtemp(join(tmpdir(), 'cvm-measure-'))
  try {
    const {path, sha256: ukiSha256} = await extractUki(disk, dir)
    const uki = await readFile(path)
    const what = `${UKI_ESP_PATH} of ${disk}`
    const sections = stubSections(uki, what)
    const params = {uki: UKI_ESP_PATH, ukiSha256, linuxSha256: createHash('sha256').update(sections['.linux'] ?? Buffer.alloc(0)).digest('hex')}
    const stub = predictPcr11(sections)
    return [
      entry(stub, 'tpm-pcr11', ['uki'], {...params, phase: 'stub'}, "PCR 11 (SHA-256 bank) after systemd-stub measured the UKI's sections, before userspace; the same as systemd-measure calculate gives for them"),
      entry(extendPcr11Phases(stub, BOOTED_PHASES), 'tpm-pcr11', ['uki'], {...params, phase: BOOTED_PHASES.join(':')}, `PCR 11 (SHA-256 bank) of the booted system: the stub's value extended by systemd-pcrphase with ${BOOTED_PHASES.join(', ')}; systemd-measure calculate --phase=${BOOTED_PHASES.join(':')} gives the same`),
      entry(predictPcr4(uki, {secureBoot: false}, what), 'tpm-pcr4', ['uki', 'firmware-events', 'boot-order', 'secure-boot'], {...params, secureBoot: 'off', earlierBootAttempts: 0}, "PCR 4 (SHA-256 bank) after the firmware started the UKI from this disk as its first boot option and the stub its kernel; assumes edk2's standard events"),
      // a signed UKI boots under Secure Boot too, where the stub vouches for its kernel and the firmware does not measure it
      ...(parsePe(uki, what).certTableSize > 0
        ? [entry(predictPcr4(uki, {secureBoot: true}, what), 'tpm-pcr4', ['uki', 'firmware-events', 'boot-order', 'secure-boot'], {...params, secureBoot: 'on', earlierBootAttempts: 0}, "PCR 4 (SHA-256 bank) after a firmware with Secure Boot on started the signed UKI from this disk as its first boot option (the stub's kernel is not measured then); assumes edk2's standard events")]
        : []),
    ]
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
}

function entry(p: PcrPrediction, kind: MeasurementEntry['kind'], dependsOn: MeasurementEntry['dependsOn'], params: Record<string, string | number>, description: string): MeasurementEntry {
  return {kind, value: p.value, algorithm: 'sha256', dependsOn, params: {pcr: p.pcr, events: p.events.length, ...params}, description}
}
