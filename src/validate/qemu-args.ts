import {BugError} from '../errors.js'
import type {ValidationMode} from '../recipe/schema.js'
import type {GuestForward} from './seed.js'
import {vtpmQemuArgs} from './vtpm.js'

/** SEV guest policy bits (AMD SEV API, LAUNCH_START): bit 0 NODBG, bit 2 ES. */
export const SEV_POLICY: Record<'sev' | 'sev-es', number> = {sev: 0x1, 'sev-es': 0x5}

/**
 * The SEV-SNP guest policy (SNP firmware ABI, SNP_LAUNCH_START): bit 16 SMT allowed, bit 17 reserved
 * and set; debugging (bit 19) off. QEMU's own default for sev-snp-guest, written out so the report's
 * argv says it (docs/validation-modes.md).
 */
export const SNP_POLICY = 0x30000

/** the modes whose guest boots one firmware image as -bios (SNP and TDX measure it whole; no pflash pair) */
export const BIOS_MODES: readonly ValidationMode[] = ['snp', 'tdx']
/** the modes of an AMD guest with encrypted memory, which need the host's C-bit position */
const AMD_MODES: readonly ValidationMode[] = ['sev', 'sev-es', 'snp']

/** reduced-phys-bits as QEMU's documented SEV form gives it (docs/design.md "The validation host"), on every host */
export const SEV_REDUCED_PHYS_BITS = 1

export interface QemuDisk {
  /** path on the host QEMU runs on */
  path: string
  format: 'raw' | 'qcow2'
  /** NVMe controller serial: how the guest tells the disks apart */
  serial: string
  /** writes go to a throw-away overlay; the file is never modified */
  snapshot?: boolean
  readOnly?: boolean
}

export interface QemuSpec {
  mode: ValidationMode
  accel: 'tcg' | 'kvm'
  memoryMiB: number
  cpus: number
  /**
   * the OVMF code and a copy of a variable store; with secureBoot the code is the SMM build
   * (OVMF_CODE_4M.secboot.fd), whose variable store can only be written from SMM, as Secure Boot needs.
   * snp and tdx: one image as -bios instead (BIOS_MODES)
   */
  firmware: {code: string; vars: string; secureBoot?: boolean} | {bios: string}
  /** the root disk first; every disk is an NVMe controller of its own, as on a CVM */
  disks: QemuDisk[]
  /** direct UKI boot with an extra command line (systemd-stub takes load options when Secure Boot is off) */
  kernel?: {path: string; append: string}
  /** host port (127.0.0.1) forwarded to the guest's sshd */
  sshPort: number
  serialLog: string
  /** SMBIOS type 1 serial, e.g. ds=nocloud-net;s=http://10.0.2.100/ */
  smbiosSerial?: string
  /**
   * the guest's TCP connections to address:port, each handed to a new run of command (its stdin
   * and stdout the connection): QEMU's guestfwd=...-cmd:, which opens no port on the host
   */
  guestForward?: GuestForward
  /** CPUID 0x8000001F EBX[5:0] of the host; required for sev, sev-es and snp */
  cbitpos?: number
  /** swtpm's control socket on the host: the guest gets it as a TPM 2.0 behind a CRB interface */
  tpmSocket?: string
}

/**
 * The QEMU command line for one validation boot, as an argument array. Pure: the same spec gives
 * the same argv, so the SEV forms can be tested where there is no SEV.
 */
export function buildQemuArgs(spec: QemuSpec): string[] {
  const {mode, firmware} = spec
  if (mode !== 'emulated' && spec.accel !== 'kvm') throw new BugError(`mode ${mode} needs KVM: TCG cannot run an encrypted guest`)
  if (AMD_MODES.includes(mode) && spec.cbitpos === undefined) throw new BugError(`mode ${mode} needs the host's C-bit position (CPUID 0x8000001F EBX[5:0])`)
  if (spec.disks.length === 0) throw new BugError('a validation boot needs a root disk')
  if (BIOS_MODES.includes(mode) !== 'bios' in firmware) throw new BugError(`mode ${mode} boots ${BIOS_MODES.includes(mode) ? 'one firmware image as -bios' : 'the OVMF code and variable store as pflash'}`)
  const secureBoot = 'code' in firmware && firmware.secureBoot === true
  if (secureBoot && mode !== 'emulated') throw new BugError(`a Secure Boot boot is emulated only: OVMF's SEV build has no SMM (asked for ${mode})`)

  const machine =
    mode === 'tdx'
      ? // TDX needs the IOAPIC emulated in QEMU (docs/system/i386/tdx.rst)
        'q35,kernel-irqchip=split,confidential-guest-support=tdx0'
      : mode !== 'emulated'
        ? 'q35,confidential-guest-support=sev0'
        : secureBoot
          ? 'q35,smm=on'
          : 'q35'
  const args = ['-machine', machine, '-accel', spec.accel]
  // the guest sees the host's CPU (and, under SEV, its C-bit position): a named model could hide either
  if (spec.accel === 'kvm') args.push('-cpu', 'host')
  args.push('-m', String(spec.memoryMiB), '-smp', String(spec.cpus))
  if (mode === 'sev' || mode === 'sev-es') {
    const policy = `0x${SEV_POLICY[mode].toString(16)}`
    args.push('-object', `sev-guest,id=sev0,cbitpos=${spec.cbitpos},reduced-phys-bits=${SEV_REDUCED_PHYS_BITS},policy=${policy}`)
  } else if (mode === 'snp') {
    // QEMU 9.1+ backs the guest's RAM with guest_memfd itself and turns SMM off for it
    args.push('-object', `sev-snp-guest,id=sev0,cbitpos=${spec.cbitpos},reduced-phys-bits=${SEV_REDUCED_PHYS_BITS},policy=0x${SNP_POLICY.toString(16)}`)
  } else if (mode === 'tdx') {
    args.push('-object', 'tdx-guest,id=tdx0')
  }
  if ('bios' in firmware) {
    // SNP and TDX measure the one image QEMU maps below 4 GiB; nothing is writable, no variable store
    args.push('-bios', firmware.bios)
  } else {
    // the flash is writable only from SMM: the guest's OS cannot change the Secure Boot variables
    if (secureBoot) args.push('-global', 'driver=cfi.pflash01,property=secure,value=on')
    args.push(
      '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${drivePath(firmware.code)}`,
      '-drive', `if=pflash,format=raw,unit=1,file=${drivePath(firmware.vars)}`,
    )
  }
  spec.disks.forEach((d, i) => {
    const opts = [`file=${drivePath(d.path)}`, `format=${d.format}`, 'if=none', `id=disk${i}`]
    if (d.snapshot) opts.push('snapshot=on')
    if (d.readOnly) opts.push('readonly=on')
    args.push('-drive', opts.join(','), '-device', `nvme,drive=disk${i},serial=${d.serial}`)
  })
  let netdev = `user,id=net0,hostfwd=tcp:127.0.0.1:${spec.sshPort}-:22`
  if (spec.guestForward) netdev += `,guestfwd=${guestForward(spec.guestForward)}`
  args.push(
    '-netdev', netdev,
    '-device', 'virtio-net-pci,netdev=net0',
    // entropy from the host: without it a pre-5.4 guest's getrandom() blocks sshd's start for
    // minutes under TCG (4.18: crng ready after 261 s)
    '-device', 'virtio-rng-pci',
  )
  if (spec.tpmSocket) args.push(...vtpmQemuArgs(spec.tpmSocket))
  if (spec.smbiosSerial) args.push('-smbios', `type=1,serial=${spec.smbiosSerial.replaceAll(',', ',,')}`)
  if (spec.kernel) args.push('-kernel', spec.kernel.path, '-append', spec.kernel.append)
  // SEV-ES guests cannot be reset: a reboot must end QEMU, and so must a kexec gone wrong in any mode.
  args.push('-no-reboot')
  args.push('-serial', `file:${spec.serialLog}`, '-monitor', 'none', '-display', 'none', '-nodefaults', '-no-user-config')
  return args
}

/** libslirp splits the command on blanks and quotes as a shell would (g_shell_parse_argv): its words are kept plain, never quoted. */
function guestForward(fwd: NonNullable<QemuSpec['guestForward']>): string {
  const odd = fwd.command.find((w) => !/^[\w./:=@+-]+$/.test(w))
  if (odd !== undefined) throw new BugError(`a guestfwd command word QEMU would not pass as it is: ${JSON.stringify(odd)}`)
  return `tcp:${fwd.address}:${fwd.port}-cmd:${fwd.command.join(' ')}`
}

/** QEMU's -drive splits on commas; a comma in a path is written twice. */
function drivePath(p: string): string {
  return p.replaceAll(',', ',,')
}
