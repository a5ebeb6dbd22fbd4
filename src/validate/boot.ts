import {mkdir} from 'node:fs/promises'
import {join} from 'node:path'

import {BugError, StageError} from '../errors.js'
import type {ValidationMode} from '../recipe/schema.js'
import type {GuestMachine} from './check-types.js'
import {SCRATCH_SERIAL} from './nvme-probe.js'
import {GuestSession, type GuestExec} from './guest.js'
import type {HostProcess, ValidationHost} from './host.js'
import {OVMF_CODE, OVMF_CODE_SECBOOT, OVMF_SNP_BIOS, OVMF_TDX_BIOS, OVMF_VARS, QEMU_BINARY} from './host-probe.js'
import {BIOS_MODES, buildQemuArgs, type QemuSpec} from './qemu-args.js'
import {startVtpm, vtpmSocket} from './vtpm.js'
import {generateRunKeys, renderSeed, SEED_SMBIOS_SERIAL, seedNetwork, serveSeed, writeSeedDisk, type RunKeys, type SeedServer} from './seed.js'

/** NoCloud seed: a FAT CIDATA disk on NVMe, or HTTP via the SMBIOS serial (local host only) */
export type SeedMethod = 'disk' | 'http'

const SCRATCH_SIZE = '64M'
/** the root disk's NVMe serial, as the firmware names its boot option: "UEFI QEMU NVMe Ctrl cvmroot 1" */
const ROOT_SERIAL = 'cvmroot'

export interface BootSpec {
  /** where QEMU runs */
  host: ValidationHost
  /** this machine: the seed disk is made here when QEMU runs elsewhere */
  local: ValidationHost
  /** the boot's name in its directory, its log lines and the report: emulated, emulated-disk-boot, emulated-secure-boot, sev */
  tag: string
  mode: ValidationMode
  accel: 'tcg' | 'kvm'
  /** the disk on the host; QEMU opens it with snapshot=on, so it is never written */
  disk: string
  /** direct UKI boot with extra arguments; without it the firmware boots \EFI\BOOT\BOOTX64.EFI */
  kernel?: {path: string; append: string}
  /** Secure Boot: the SMM firmware with a copy of this variable store (on the host), which must enroll the UKI's signer */
  secureBootVars?: string
  /** attach a vTPM (swtpm on the host, QEMU's tpm-crb) */
  vtpm: boolean
  /** the run's directory on the host */
  work: string
  seed: SeedMethod
  templatesDir: string
  hostname: string
  memoryMiB: number
  cpus: number
  /** the host's C-bit position, for sev, sev-es and snp */
  cbitpos?: number
  bootTimeoutMs: number
  signal?: AbortSignal
  log: (line: string) => void
  progress: (line: string) => void
}

/**
 * One QEMU boot of the disk: the NoCloud seed with the run's keys, a scratch disk, the OVMF variable
 * store, QEMU itself and the SSH session with the guest. prepare(), start(), then stop() whatever
 * happened: QEMU is killed and the seed server closed.
 */
export class GuestBoot implements GuestMachine {
  private qemu?: HostProcess
  private swtpm?: HostProcess
  private session?: GuestSession
  private goneReason?: string
  private stopped = false
  private readonly onAbort = () => void this.qemu?.kill()

  private constructor(
    private readonly spec: BootSpec,
    private readonly keys: RunKeys,
    /** the host port QEMU forwards to the guest's sshd */
    private readonly sshPort: number,
    /** QEMU's arguments, as the report records them */
    readonly qemuArgs: string[],
    /** the serial console's file on the host */
    readonly serialLog: string,
    /** how the guest gets its seed, for the report */
    readonly seedDescription: string,
    /** the boot's directory on the host */
    private readonly bootDir: string,
    private readonly seedServer?: SeedServer,
  ) {}

  /** Makes the boot's files on the host (seed, scratch disk, variable store) and QEMU's command line. */
  static async prepare(spec: BootSpec): Promise<GuestBoot> {
    const {host, tag} = spec
    const keys = generateRunKeys()
    const seed = await renderSeed(spec.templatesDir, keys, {hostname: spec.hostname})
    const bootDir = join(spec.work, tag)
    await host.exec('mkdir', ['-p', bootDir])
    const disks: QemuSpec['disks'] = [{path: spec.disk, format: 'raw', serial: ROOT_SERIAL, snapshot: true}]
    const scratch = join(bootDir, 'scratch.qcow2')
    await mustExec(host, 'qemu-img', ['create', '-q', '-f', 'qcow2', scratch, SCRATCH_SIZE], 'make the scratch disk')
    disks.push({path: scratch, format: 'qcow2', serial: SCRATCH_SERIAL})
    let seedServer: SeedServer | undefined
    let seedNet: ReturnType<typeof seedNetwork> | undefined
    if (spec.seed === 'disk') {
      const localSeedDir = join(host.remote ? await spec.local.tempDir() : spec.work, tag)
      await mkdir(localSeedDir, {recursive: true})
      const img = await writeSeedDisk(localSeedDir, seed, spec.signal)
      const hostImg = join(bootDir, 'seed.img')
      await host.putFile(img, hostImg)
      disks.push({path: hostImg, format: 'raw', serial: 'cvmseed', readOnly: true})
    } else {
      // without it QEMU only logs that it could not start the relay, and cloud-init finds no seed
      await mustExec(host, 'socat', ['-V'], "run socat, the HTTP seed's relay")
      seedServer = await serveSeed(seed)
      seedNet = seedNetwork(seedServer)
    }
    try {
      const vars = join(bootDir, 'OVMF_VARS.fd')
      // snp and tdx boot one firmware image (-bios), which holds its own variables: no store to copy
      const bios = BIOS_MODES.includes(spec.mode) ? (spec.mode === 'tdx' ? OVMF_TDX_BIOS : OVMF_SNP_BIOS) : undefined
      if (!bios) await mustExec(host, 'cp', [spec.secureBootVars ?? OVMF_VARS, vars], 'copy the OVMF variable store')
      const serialLog = join(bootDir, 'serial.log')
      const sshPort = await host.freePort()
      const argv = buildQemuArgs({
        mode: spec.mode,
        accel: spec.accel,
        memoryMiB: spec.memoryMiB,
        cpus: spec.cpus,
        firmware: bios ? {bios} : spec.secureBootVars ? {code: OVMF_CODE_SECBOOT, vars, secureBoot: true} : {code: OVMF_CODE, vars},
        disks,
        kernel: spec.kernel,
        sshPort,
        serialLog,
        ...seedNet,
        cbitpos: spec.cbitpos,
        tpmSocket: spec.vtpm ? vtpmSocket(bootDir) : undefined,
      })
      const seedDescription = spec.seed === 'disk' ? 'NoCloud FAT disk (label CIDATA) on NVMe' : `NoCloudNet over HTTP (SMBIOS serial ${SEED_SMBIOS_SERIAL}; QEMU's guestfwd relays each connection to a Unix socket only this user can open)`
      return new GuestBoot(spec, keys, sshPort, argv, serialLog, seedDescription, bootDir, seedServer)
    } catch (e) {
      await seedServer?.close()
      throw e
    }
  }

  get accel(): 'tcg' | 'kvm' {
    return this.spec.accel
  }

  /** Starts the vTPM when the boot has one, then QEMU; an abort of the run kills both. */
  async start(): Promise<void> {
    if (this.spec.vtpm) {
      const vtpm = await startVtpm(this.spec.host, this.bootDir)
      this.swtpm = vtpm.process
    }
    this.spec.log(`${QEMU_BINARY} ${this.qemuArgs.join(' ')}`)
    this.qemu = this.spec.host.spawn(QEMU_BINARY, this.qemuArgs)
    this.spec.signal?.addEventListener('abort', this.onAbort, {once: true})
  }

  /** Waits for the guest's SSH (run key, pinned run host key); fails when it does not answer in time or QEMU ends. */
  async connect(): Promise<GuestSession> {
    const {progress, log, tag, accel} = this.spec
    progress(`${tag}: waiting for the guest's SSH (${accel})`)
    const session = await GuestSession.waitFor(this.spec.host, this.sshPort, this.keys, {
      timeoutMs: this.spec.bootTimeoutMs,
      signal: this.spec.signal,
      qemuExited: this.running.exited,
      onAttempt: (e) => log(`${tag}: ssh: ${e}`),
      // OVMF waits at its boot menu for ever once nothing on the disk may boot (under Secure Boot, an unsigned UKI)
      stopWhen: async () => firmwareRefusal(await this.serial()),
    })
    if (this.stopped) {
      session.close()
      throw new StageError(`${tag}: the boot was stopped while waiting for the guest`)
    }
    this.session = session
    this.goneReason = undefined
    return session
  }

  /** The session with the guest; it fails once the guest is gone. */
  get guest(): GuestExec {
    if (!this.session || this.goneReason !== undefined) throw new StageError(`${this.spec.tag}: no session with the guest${this.goneReason ? ` (${this.goneReason})` : ''}`)
    return this.session
  }

  get gone(): string | undefined {
    return this.goneReason
  }

  leaving(reason: string): void {
    this.goneReason = reason
  }

  async reconnect(): Promise<GuestExec> {
    // a command fired just before (kexec -e) needs a moment to reach the guest before its session goes
    await new Promise((r) => setTimeout(r, 3000))
    this.session?.close()
    this.session = undefined
    return this.connect()
  }

  get exited(): Promise<number | null> {
    return this.running.exited
  }

  output(): string {
    return this.running.output()
  }

  async serial(): Promise<string> {
    return ((await this.spec.host.readFile(this.serialLog)) ?? Buffer.alloc(0)).toString('utf8').replace(/\r/g, '')
  }

  /** Closes the session, kills QEMU, closes the HTTP seed server. */
  async stop(): Promise<void> {
    this.stopped = true
    this.session?.close()
    this.spec.signal?.removeEventListener('abort', this.onAbort)
    await this.qemu?.kill()
    await this.swtpm?.kill()
    if (this.seedServer) {
      await this.seedServer.close()
      this.spec.log(`${this.spec.tag}: HTTP seed requests: ${this.seedServer.requests.join(', ') || 'none'}`)
    }
  }

  private get running(): HostProcess {
    if (!this.qemu) throw new BugError('QEMU has not been started')
    return this.qemu
  }
}

async function mustExec(host: ValidationHost, cmd: string, args: string[], what: string): Promise<void> {
  const r = await host.exec(cmd, args)
  if (r.exitCode !== 0) throw new StageError(`${what} on ${host.label}: ${cmd} ${args.join(' ')} exited with ${r.exitCode}: ${(r.stderr || r.stdout).trim()}`)
}

/**
 * What OVMF printed when it would not boot the root disk, or undefined while it has not said so:
 * its refusal of the disk's boot option ("Access Denied" for an image Secure Boot cannot verify),
 * or, when it tried everything, each refusal and its closing line. The disk is the first option it
 * tries; the network options after it wait minutes for DHCP, so the disk's refusal is enough.
 */
export function firmwareRefusal(serial: string): string | undefined {
  // the console's escape sequences (cursor moves) may stand before a line's text
  const lines = serial.split('\n').map((l) => l.replace(/\x1b\[[0-9;=?]*[A-Za-z]/g, '')).map((l) => (l.includes('BdsDxe: ') ? l.slice(l.indexOf('BdsDxe: ')) : l).trim())
  const failed = lines.filter((l) => /^BdsDxe: failed to (load|start) /.test(l))
  const root = failed.find((l) => l.includes(`NVMe Ctrl ${ROOT_SERIAL} `))
  if (root) return `the firmware would not boot the disk: ${root}`
  if (!lines.includes('BdsDxe: No bootable option or device was found.')) return undefined
  // the options that do not exist (a network boot with no server) say nothing of the image
  const refused = failed.filter((l) => !l.endsWith(': Not Found'))
  return `the firmware found nothing it may boot: ${[...refused, 'BdsDxe: No bootable option or device was found.'].join(' | ')}`
}
