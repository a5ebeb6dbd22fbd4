import {createHash} from 'node:crypto'
import {mkdtemp, readFile, rm, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {UKI_ESP_PATH} from '../disk/image.js'
import {parsePe} from '../disk/pe.js'
import {OVMF_VARS, OVMF_VARS_SNAKEOIL} from '../validate/host-probe.js'
import {extractUki} from '../validate/uki.js'
import type {MeasurementEntry} from './entry.js'
import {EFI_IMAGE_SECURITY_DATABASE, readVariableStore, signatureEntries, variable, type EfiVariable} from './ovmf-vars.js'
import {extendPcr11Phases, predictPcr11, predictPcr4, stubSections, type PcrPrediction} from './pcr.js'
import {predictPcr7, verifyingDbEntry} from './pcr7.js'

/**
 * The words systemd-pcrphase extends PCR 11 with on a system booted without an initrd from a UKI
 * (Debian 12's systemd-pcrphase-sysinit.service and systemd-pcrphase.service; they run only with a
 * TPM and when the stub measured: ConditionSecurity=tpm2, the StubPcrKernelImage EFI variable).
 */
export const BOOTED_PHASES = ['sysinit', 'ready'] as const

/**
 * The TPM PCR predictions of a disk cvm-image assembled, as measurement entries: PCR 11 (systemd-stub's
 * measurements of the UKI's sections: the UKI alone decides it), PCR 4 (the firmware's boot
 * application chain: the UKI plus edk2's standard events, the disk being the first boot option) and
 * PCR 7 (the Secure Boot policy: the variable store's keys, and under Secure Boot the db entry that
 * verified the UKI), with Secure Boot off, and for a signed UKI with Secure Boot on as well.
 * docs/pcr-measurements.md.
 */
export async function pcrMeasurements(disk: string, opts: {secureBootVars?: string} = {}): Promise<{entries: MeasurementEntry[]; notes: string[]}> {
  const dir = await mkdtemp(join(tmpdir(), 'cvm-measure-'))
  try {
    const {path, sha256: ukiSha256} = await extractUki(disk, dir)
    const uki = await readFile(path)
    const what = `${UKI_ESP_PATH} of ${disk}`
    const sections = stubSections(uki, what)
    const params = {uki: UKI_ESP_PATH, ukiSha256, linuxSha256: createHash('sha256').update(sections['.linux'] ?? Buffer.alloc(0)).digest('hex')}
    const stub = predictPcr11(sections)
    const signed = parsePe(uki, what).certTableSize > 0
    const entries = [
      entry(stub, 'tpm-pcr11', ['uki'], {...params, phase: 'stub'}, "PCR 11 (SHA-256 bank) after systemd-stub measured the UKI's sections, before userspace; the same as systemd-measure calculate gives for them"),
      entry(extendPcr11Phases(stub, BOOTED_PHASES), 'tpm-pcr11', ['uki'], {...params, phase: BOOTED_PHASES.join(':')}, `PCR 11 (SHA-256 bank) of the booted system: the stub's value extended by systemd-pcrphase with ${BOOTED_PHASES.join(', ')}; systemd-measure calculate --phase=${BOOTED_PHASES.join(':')} gives the same`),
      entry(predictPcr4(uki, {secureBoot: false}, what), 'tpm-pcr4', ['uki', 'firmware-events', 'boot-order', 'secure-boot'], {...params, secureBoot: 'off', earlierBootAttempts: 0}, "PCR 4 (SHA-256 bank) after the firmware started the UKI from this disk as its first boot option and the stub its kernel; assumes edk2's standard events"),
      // a signed UKI boots under Secure Boot too, where the stub vouches for its kernel and the firmware does not measure it
      ...(signed
        ? [entry(predictPcr4(uki, {secureBoot: true}, what), 'tpm-pcr4', ['uki', 'firmware-events', 'boot-order', 'secure-boot'], {...params, secureBoot: 'on', earlierBootAttempts: 0}, "PCR 4 (SHA-256 bank) after a firmware with Secure Boot on started the signed UKI from this disk as its first boot option (the stub's kernel is not measured then); assumes edk2's standard events")]
        : []),
    ]
    const stores = await varStores(uki, signed, opts.secureBootVars)
    const notes: string[] = []
    for (const secureBoot of signed ? [false, true] : [false]) {
      const state = secureBoot ? 'on' : 'off'
      const store = secureBoot ? stores.on : stores.off
      if (!store) {
        notes.push(`no PCR 7 with Secure Boot ${state}: no variable store was given for it${secureBoot ? " (one whose db verifies the UKI's signature)" : ''}`)
        continue
      }
      const r = predictPcr7(store.vars, {secureBoot, uki})
      if ('notPredicted' in r) {
        notes.push(`no PCR 7 with Secure Boot ${state} for ${store.path}: ${r.notPredicted}`)
        continue
      }
      entries.push(
        entry(r.prediction, 'tpm-pcr7', secureBoot ? ['secure-boot', 'secure-boot-keys', 'uki'] : ['secure-boot', 'secure-boot-keys'], {secureBoot: state, varStore: store.path, varStoreSha256: store.sha256, ...(secureBoot ? {ukiSha256} : {})}, secureBoot
          ? "PCR 7 (SHA-256 bank), the Secure Boot policy, with Secure Boot on: the store's SecureBoot, PK, KEK, db and dbx, then the db entry that verified the UKI; assumes edk2's standard events"
          : "PCR 7 (SHA-256 bank), the Secure Boot policy, with Secure Boot off: the store's PK, KEK, db and dbx (any disk booted with this store gives it); assumes edk2's standard events"),
      )
    }
    return {entries, notes}
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
}

/** A variable store read once: its path, sha256 and live variables. */
interface VarStore {
  path: string
  sha256: string
  vars: EfiVariable[]
}

async function readStore(path: string): Promise<VarStore> {
  const bytes = await readFile(path)
  return {path, sha256: createHash('sha256').update(bytes).digest('hex'), vars: readVariableStore(bytes, path)}
}

/**
 * The stores PCR 7 is predicted for: Secure Boot off with the store validation boots
 * (OVMF_VARS_4M.fd), on with the store named, else Debian's snakeoil store when its db verifies the
 * UKI (a UKI signed with the snakeoil key, as the tests sign); another key's store must be named. A
 * store named is read at once: one that is none fails, signed UKI or not.
 */
async function varStores(uki: Buffer, signed: boolean, named?: string): Promise<{off?: VarStore; on?: VarStore}> {
  const exists = (p: string) => stat(p).then((s) => s.isFile(), () => false)
  const on = named ? await readStore(named) : undefined
  const off = (await exists(OVMF_VARS)) ? await readStore(OVMF_VARS) : undefined
  if (named || !signed || !(await exists(OVMF_VARS_SNAKEOIL))) return {off, on}
  const snakeoil = await readStore(OVMF_VARS_SNAKEOIL)
  const db = variable(snakeoil.vars, 'db', EFI_IMAGE_SECURITY_DATABASE)
  return {off, on: db && verifyingDbEntry(signatureEntries(db, 'db'), uki) ? snakeoil : undefined}
}

function entry(p: PcrPrediction, kind: MeasurementEntry['kind'], dependsOn: MeasurementEntry['dependsOn'], params: Record<string, string | number>, description: string): MeasurementEntry {
  return {kind, value: p.value, algorithm: 'sha256', dependsOn, params: {pcr: p.pcr, events: p.events.length, ...params}, description}
}
