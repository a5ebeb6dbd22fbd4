import {stat} from 'node:fs/promises'
import {join, resolve} from 'node:path'

import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {optionSet, resolveCacheDir} from '../cli/flags.js'
import {HostError, InputError} from '../errors.js'
import {DEFAULT_CPU_TYPE} from '../measure/cpu-types.js'
import type {MeasurementEntry} from '../measure/entry.js'
import {measureImage} from '../measure/image.js'
import {DEFAULT_SNP_GUEST_FEATURES, LAUNCH_MODES, SEV_MODES, type LaunchMode} from '../measure/launch.js'
import {SNP_VMMS, VMSA_FORMS, type SnpVmm, type VmsaForm} from '../measure/vmsa.js'
import {readBuildRecord, type BuildRecord} from '../pipeline/build-record.js'
import {validatedSecureBootVars} from '../publish/index.js'
import {VALIDATE_DEFAULTS} from '../recipe/schema.js'
import {OVMF_CODE, OVMF_VARS_SNAKEOIL} from '../validate/host-probe.js'
import {OVMF_SNP_BIOS} from '../validate/ovmf-files.js'

/** What was measured for: a disk image given by path, or the disk of a recipe's last build. */
export type MeasureSubject =
  | {kind: 'disk'; path: string}
  | {kind: 'build'; recipeId: string; disk?: string; diskSha256?: string}

export interface MeasureResult {
  subject: MeasureSubject
  measurements: MeasurementEntry[]
  notes: string[]
}

const MEASURE_OPTIONS = optionSet(['cache-dir', 'secure-boot-vars'], {
  'secure-boot-vars': {help: `for PCR 7 with Secure Boot on: the OVMF variable store the firmware boots with, whose db verifies the signed UKI [default: ${OVMF_VARS_SNAKEOIL} when its db does; for a build, the store its validation booted]`},
})

export default class Measure extends BaseCommand {
  static summary = 'Print the expected measurements of an image: TPM PCR 4, 7 and 11, SEV and SEV-ES launch digests (and SEV-SNP with --mode snp).'
  static description = `For the disk's UKI, the TPM PCR 11 (systemd-stub's measurements of its sections: the UKI alone decides it)
and PCR 4 (the firmware's boot application chain, assuming edk2's standard events and the disk as the first boot
option) and PCR 7 (the Secure Boot policy: the firmware variable store's keys, and under Secure Boot the db entry that
verifies the UKI), SHA-256 bank, with Secure Boot off, and on as well for a signed UKI (docs/pcr-measurements.md). For each firmware, one SEV launch digest, and one SEV-ES launch digest per vCPU count, vCPU type and
VMSA form (the KVM interface that starts the guest, which decides part of the vCPUs' initial state). With --mode snp,
one SEV-SNP launch digest (SHA-384, the attestation report's MEASUREMENT) per vCPU count, vCPU type, guest features
and VMM, for a firmware carrying OVMF's SEV metadata (default ${OVMF_SNP_BIOS}, the image QEMU takes as -bios). A disk
boot's digest binds the firmware and, under SEV-ES, the vCPUs' start state, not the disk. With --kernel, the
digests of a measured direct boot (OvmfPkg/AmdSev firmware, QEMU -kernel with kernel-hashes=on), which bind the
kernel, initrd and command line too. The algorithm and what each digest depends on: docs/measurements.md.`
  static examples = [
    '<%= config.bin %> measure debian-12',
    '<%= config.bin %> measure out/debian-12/1735689600-3f2a9c1b7d4e/disk.raw --cpus 1,2,4 --cpu-type EPYC-v4,EPYC-Milan --json',
    '<%= config.bin %> measure disk.raw --mode sev-es --vmsa-form legacy --cpu-type 25/1/1',
    '<%= config.bin %> measure disk.raw --firmware OVMF.amdsev.fd --kernel vmlinuz --initrd initrd.img --append "console=ttyS0"',
    '<%= config.bin %> measure disk.raw --no-pcr --mode snp --cpus 1,4 --cpu-type EPYC-Milan,EPYC-Genoa --guest-features 0x1,0x21',
  ]
  static args = {
    target: Args.string({description: 'a disk image (raw), or a recipe id (its last build in the cache) or build record (.json)', required: true}),
  }
  static flags = {
    firmware: Flags.string({description: `the OVMF image QEMU loads: pflash unit 0 for SEV and SEV-ES, -bios for SEV-SNP (repeatable) [default: ${OVMF_CODE}, the one validation uses; for snp ${OVMF_SNP_BIOS}]`, multiple: true}),
    mode: Flags.string({description: 'which launch digests (comma-separated or repeated): sev, sev-es, snp (SEV-SNP)', options: [...LAUNCH_MODES], multiple: true, delimiter: ',', default: [...SEV_MODES]}),
    cpus: Flags.string({description: "vCPU counts for SEV-ES and SEV-SNP, e.g. 1,2,4 [default: the recipe's validate.cpus; for a disk, the schema's default]", multiple: true, delimiter: ','}),
    'guest-features': Flags.string({description: `SEV-SNP: the SEV features every vCPU starts with, in hex (bit 0 SNPActive, bit 5 DebugSwap, ...) [default: 0x${DEFAULT_SNP_GUEST_FEATURES.toString(16)}, what QEMU asks for]`, multiple: true, delimiter: ','}),
    'vmm-type': Flags.string({description: "SEV-SNP: the VMM that launches the guest, which decides the vCPUs' start state: qemu (QEMU + KVM), ec2 (AWS), gce (Google) [default: qemu]", options: [...SNP_VMMS], multiple: true, delimiter: ','}),
    'cpu-type': Flags.string({description: 'vCPU types for SEV-ES and SEV-SNP: a QEMU model (EPYC-v4, EPYC-Milan, ...), family/model/stepping (for -cpu host: the host\'s), or a CPUID 1 EAX signature in hex', multiple: true, delimiter: ',', default: [DEFAULT_CPU_TYPE]}),
    'vmsa-form': Flags.string({description: 'the KVM interface that makes the SEV-ES VMSAs: legacy (KVM_SEV_ES_INIT), legacy-debug-swap (Linux 6.5-6.7 DebugSwap), init2 (KVM_SEV_INIT2) [default: all]', options: [...VMSA_FORMS], multiple: true, delimiter: ','}),
    kernel: Flags.file({description: 'measured direct boot: the file QEMU gets as -kernel (with sev-guest kernel-hashes=on; needs an OvmfPkg/AmdSev firmware)'}),
    initrd: Flags.file({description: 'measured direct boot: the file QEMU gets as -initrd', dependsOn: ['kernel']}),
    append: Flags.string({description: 'measured direct boot: the -append command line', dependsOn: ['kernel']}),
    pcr: Flags.boolean({description: "predict the TPM PCRs of the disk's UKI (--no-pcr: the SEV digests only)", default: true, allowNo: true}),
    ...MEASURE_OPTIONS.flags,
  }

  async run(): Promise<MeasureResult> {
    const {args, flags} = await this.parse(Measure)
    const o = MEASURE_OPTIONS.parse(flags)
    const {subject, cpus: recipeCpus, record} = await resolveTarget(args.target, resolveCacheDir(o['cache-dir']))
    const cpus = flags.cpus ? flags.cpus.map(parseCount) : [recipeCpus]
    const modes = flags.mode as LaunchMode[]
    const sevAsked = modes.some((m) => m !== 'snp')
    const firmware = flags.firmware ? flags.firmware.map((f) => resolve(f)) : sevAsked ? [await defaultFirmware(OVMF_CODE, 'the one validation boots')] : []
    const snpFirmware = flags.firmware ? firmware : modes.includes('snp') ? [await defaultFirmware(OVMF_SNP_BIOS, 'the -bios image of an SEV-SNP guest')] : []
    const disk = subject.kind === 'disk' ? subject.path : subject.disk
    const {measurements, notes} = await measureImage({
      disk: flags.pcr ? disk : undefined,
      // a build's PCR 7 with Secure Boot on is the one its validation booted (the store it enrolled), as its release says
      secureBootVars: o['secure-boot-vars'] ?? (record && (await validatedSecureBootVars(record))),
      firmware,
      modes,
      snpFirmware,
      guestFeatures: (flags['guest-features'] ?? [`0x${DEFAULT_SNP_GUEST_FEATURES.toString(16)}`]).map(parseGuestFeatures),
      vmms: (flags['vmm-type'] ?? ['qemu']) as SnpVmm[],
      cpus,
      cpuTypes: flags['cpu-type'],
      vmsaForms: (flags['vmsa-form'] ?? [...VMSA_FORMS]) as VmsaForm[],
      kernelBoot: flags.kernel ? {kernel: resolve(flags.kernel), initrd: flags.initrd && resolve(flags.initrd), append: flags.append} : undefined,
    })
    const result: MeasureResult = {subject, measurements, notes}
    if (!this.jsonEnabled()) this.show(result)
    return result
  }

  private show(r: MeasureResult): void {
    const s = r.subject
    this.log(s.kind === 'disk' ? `disk ${s.path}` : `build ${s.recipeId}${s.disk ? `: disk ${s.disk}` : ''}${s.diskSha256 ? ` (sha256 ${s.diskSha256})` : ''}`)
    for (const m of r.measurements) {
      const p = m.params
      const es = m.kind === 'sev-es-launch' ? `, ${p.vcpus} vCPU(s) ${p.cpuType} (${p.cpuSignature}), VMSA form ${p.vmsaForm}` : ''
      if (m.kind === 'tpm-pcr7') {
        this.log(`${m.kind.padEnd(14)} ${m.value}  PCR 7 (sha256 bank), Secure Boot ${p.secureBoot}, variable store ${p.varStore} (sha256 ${p.varStoreSha256})`)
        continue
      }
      if (m.kind === 'tpm-pcr4' || m.kind === 'tpm-pcr11') {
        const phase = p.phase ? `, phase ${p.phase}` : ''
        this.log(`${m.kind.padEnd(14)} ${m.value}  PCR ${p.pcr} (sha256 bank) of the UKI ${p.uki} (sha256 ${p.ukiSha256})${phase}${p.secureBoot ? `, Secure Boot ${p.secureBoot}` : ''}`)
        continue
      }
      const boot = p.kernel ? `, kernel ${p.kernel}, initrd ${p.initrd}, cmdline "${p.cmdline}"` : ''
      if (m.kind === 'snp-launch') {
        this.log(`${m.kind.padEnd(14)} ${m.value}  ${p.firmware}${boot}, ${p.vcpus} vCPU(s) ${p.cpuType ?? ''}${p.cpuType ? ' ' : ''}(${p.cpuSignature}), guest features ${p.guestFeatures}, VMM ${p.vmm}`)
        continue
      }
      this.log(`${m.kind.padEnd(14)} ${m.value}  ${p.firmware}${boot}${es}`)
    }
    const forms = [...new Set(r.measurements.map((m) => m.params.vmsaForm).filter((f): f is string => typeof f === 'string'))]
    for (const f of forms) this.log(`VMSA form ${f}: ${r.measurements.find((m) => m.params.vmsaForm === f)?.params.vmsaFormMeans}`)
    for (const n of r.notes) this.log(`note: ${n}`)
  }
}

/** A disk path, or a recipe id / build record: what the digests are listed for, and its vCPU count. */
async function resolveTarget(target: string, cacheDir: string): Promise<{subject: MeasureSubject; cpus: number; record?: BuildRecord}> {
  const st = await stat(target).catch(() => undefined)
  if (st && !target.endsWith('.json')) {
    if (!st.isFile()) throw new InputError(`${target} is not a disk image file`, {hint: 'give a raw disk image, or a recipe id whose last build is in the cache'})
    return {subject: {kind: 'disk', path: resolve(target)}, cpus: VALIDATE_DEFAULTS.cpus}
  }
  if (!st && !target.endsWith('.json') && /[/.]/.test(target)) {
    throw new InputError(`no disk image at ${target}`, {hint: 'give the path of a raw disk image, or a recipe id whose last build is in the cache'})
  }
  const record = await readBuildRecord(cacheDir, target).catch((e: unknown) => {
    if (!(e instanceof InputError)) throw e
    throw new InputError(`${target} is neither a disk image file nor a recipe with a build: ${e.message}`, {
      hint: `give the path of a raw disk image, or run \`cvm-image build ${target.replace(/\.json$/, '')}\` first (or give --cache-dir where it was built)`,
    })
  })
  const assemble = record.stages.assemble
  return {
    subject: {kind: 'build', recipeId: record.recipeId, disk: assemble && join(assemble.dir, 'disk.raw'), diskSha256: assemble?.meta.diskSha256},
    cpus: record.recipe.validate.cpus,
    record,
  }
}

function parseCount(s: string): number {
  if (!/^\d+$/.test(s.trim()) || Number(s) < 1) throw new InputError(`--cpus ${s}: a vCPU count is a whole number from 1`, {hint: 'give --cpus as a list such as 1,2,4'})
  return Number(s)
}

function parseGuestFeatures(s: string): bigint {
  if (!/^(0x)?[0-9a-f]{1,16}$/i.test(s.trim())) {
    throw new InputError(`--guest-features ${s}: not a 64-bit value in hex`, {hint: 'give the SEV features in hex, e.g. 0x1 (SNPActive) or 0x21 (SNPActive and DebugSwap)'})
  }
  return BigInt(s.trim().toLowerCase().startsWith('0x') ? s.trim() : `0x${s.trim()}`)
}

/** A default firmware of Debian's ovmf: a host without it lacks the package. */
async function defaultFirmware(path: string, what: string): Promise<string> {
  if (await stat(path).then((s) => s.isFile(), () => false)) return path
  throw new HostError(`no OVMF firmware at ${path}, ${what}`, {
    hint: 'install it (apt-get install ovmf, or cvm-image doctor --install as root), or give a firmware with --firmware',
  })
}
