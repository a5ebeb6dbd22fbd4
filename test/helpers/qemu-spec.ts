import type {QemuSpec} from '../../src/validate/qemu-args.js'

/** A boot's QEMU spec with made-up paths, for tests of the argv alone (nothing is started). */
export const QEMU_BASE: QemuSpec = {
  mode: 'emulated',
  accel: 'tcg',
  memoryMiB: 2048,
  cpus: 2,
  firmware: {code: '/usr/share/OVMF/OVMF_CODE_4M.fd', vars: '/w/OVMF_VARS.fd'},
  disks: [{path: '/img/disk.raw', format: 'raw', serial: 'cvmroot', snapshot: true}],
  sshPort: 40022,
  serialLog: '/w/serial.log',
}

/** The value after each occurrence of a flag in an argv. */
export const after = (argv: string[], flag: string): string[] => argv.flatMap((a, i) => (a === flag ? [argv[i + 1]] : []))
