import {X509Certificate} from 'node:crypto'
import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {resolve} from 'node:path'

import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {optionSet} from '../cli/flags.js'
import {runInterruptible} from '../cli/interrupt.js'
import {ExitCode, HostError, InputError} from '../errors.js'
import {OPTIONS, readableFile} from '../pipeline/options.js'
import {VALIDATE_DEFAULTS} from '../recipe/schema.js'
import type {ValidationReport} from '../validate/report.js'
import {OVMF_VARS, OVMF_VARS_SNAKEOIL} from '../validate/host-probe.js'
import {GUEST_DEFAULTS, validateOnHost} from '../validate/run.js'
import {ENROLLED_STORE, writeEnrolledStore} from '../validate/secure-boot-store.js'
import {readMeasurementsFile} from '../validate/vtpm.js'

const VALIDATE_FLAGS = ['mode', 'host', 'hosts-file', 'host-wait', 'host-key', 'known-hosts', 'identity', 'identity-passphrase-file', 'secure-boot-vars', 'secure-boot-cert', 'kernel-meta', 'measurements'] as const

const VALIDATE_OPTIONS = optionSet(VALIDATE_FLAGS, {
  mode: {default: VALIDATE_DEFAULTS.modes},
  'secure-boot-cert': {help: `${OPTIONS['secure-boot-cert'].help} (the store is kept in --out as ${ENROLLED_STORE})`},
  'secure-boot-vars': {
    help: `also boot the disk alone under Secure Boot (emulated), with a copy of this OVMF 4M variable store: Secure Boot on, the UKI's signing certificate in db (for Debian's snakeoil key: ${OVMF_VARS_SNAKEOIL})`,
  },
})

export default class Validate extends BaseCommand {
  static summary = 'Boot a disk image under QEMU + OVMF and prove it works as a confidential guest.'
  static description = `The image is never modified: it boots with writes going to a throw-away overlay, reached over SSH with
a per-run key from a NoCloud seed. Writes report.json, junit.xml and serial.log to --out.
Exit code 0: every check passed or was skipped with a reason; 1: a check failed; 3: the host lacks the mode.`

  static examples = [
    '<%= config.bin %> validate out/disk.raw',
    '<%= config.bin %> validate out/disk.raw --mode sev-es --host root@epyc1 --host-key SHA256:abc...',
    '<%= config.bin %> validate out/disk.raw --hosts-file team-hosts.txt --identity ~/.ssh/id_ed25519',
    '<%= config.bin %> validate disk.raw --measurements out/debian-12/1735689600-3f2a9c1b7d4e/manifest.json',
    '<%= config.bin %> validate disk.raw --secure-boot-cert db.pem --no-uki-boot --no-disk-boot',
    '<%= config.bin %> validate out/disk.raw --secure-boot-vars /usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd --no-uki-boot --no-disk-boot',
  ]

  static args = {
    image: Args.string({description: 'the disk image (GPT, UKI on the ESP) that assemble made', required: true}),
  }

  static flags = {
    ...VALIDATE_OPTIONS.flags,
    out: Flags.directory({description: 'where report.json, junit.xml and serial.log go', default: 'validate-out'}),
    release: Flags.string({description: 'the uname -r the booted kernel must report (instead of --kernel-meta)'}),
    seed: Flags.string({description: 'how the NoCloud seed reaches the guest', options: ['disk', 'http'], default: 'disk'}),
    'uki-boot': Flags.boolean({description: 'the full emulated boot: the UKI with swiotlb=force and every check', default: true, allowNo: true}),
    'disk-boot': Flags.boolean({description: 'also boot the disk alone (firmware finds \\EFI\\BOOT\\BOOTX64.EFI)', default: true, allowNo: true}),
    memory: Flags.integer({description: 'guest memory, MiB', default: GUEST_DEFAULTS.memoryMiB, min: 256}),
    cpus: Flags.integer({description: 'guest vCPUs', default: GUEST_DEFAULTS.cpus, min: 1}),
    'boot-timeout': Flags.integer({description: 'seconds for the guest to answer SSH', default: GUEST_DEFAULTS.bootTimeoutS, min: 10}),
  }

  async run(): Promise<ValidationReport> {
    const {args, flags} = await this.parse(Validate)
    // the options build takes too, parsed by the same rows (src/pipeline/options.ts) before any boot
    const o = VALIDATE_OPTIONS.parse(flags)
    const image = readableFile(args.image)
    const pin = o['known-hosts'] ?? o['host-key'] ?? {}
    let secureBootVars = o['secure-boot-vars']
    if (o['secure-boot-cert']) {
      const pem = await readFile(o['secure-boot-cert'], 'utf8')
      let cert: X509Certificate
      try {
        cert = new X509Certificate(pem)
      } catch (e) {
        throw new InputError(`--secure-boot-cert ${o['secure-boot-cert']} is not an X.509 certificate: ${(e as Error).message}`, {hint: 'give the PEM certificate whose key signed the UKI (build --signing-cert)'})
      }
      if (!existsSync(OVMF_VARS)) throw new HostError(`no ${OVMF_VARS} to enroll the certificate into`, {hint: 'install the ovmf package (cvm-image doctor --install), or give a store with --secure-boot-vars'})
      secureBootVars = await writeEnrolledStore(resolve(flags.out), await readFile(OVMF_VARS), cert.toString(), OVMF_VARS)
    }
    const expectedMeasurements = o.measurements ? {...(await readMeasurementsFile(o.measurements)), source: o.measurements} : undefined
    const kernel = o['kernel-meta'] ? (JSON.parse(await readFile(o['kernel-meta'], 'utf8')) as {release?: string; version?: string}) : {}
    return runInterruptible(
      async (signal) => {
        const hosts = o['hosts-file'] ? {hosts: o['hosts-file'].hosts} : {host: o.host, ...pin}
        const report = await validateOnHost({...hosts, identity: o.identity, identityPassphraseFile: o['identity-passphrase-file'], hostWaitMs: o['host-wait'], signal}, {
          disk: image,
          modes: o.mode ?? [...VALIDATE_DEFAULTS.modes],
          templatesDir: this.dirs(flags.root).templates,
          outDir: resolve(flags.out),
          expected: {release: flags.release ?? kernel.release, version: kernel.version},
          memoryMiB: flags.memory,
          cpus: flags.cpus,
          bootTimeoutS: flags['boot-timeout'],
          hostname: GUEST_DEFAULTS.hostname,
          seed: flags.seed as 'disk' | 'http',
          ukiBoot: flags['uki-boot'],
          diskBoot: flags['disk-boot'],
          secureBootVars,
          expectedMeasurements,
          progress: (l) => this.logToStderr(l),
        })
        if (!this.jsonEnabled()) {
          // which host ran which boot, when the boots ran elsewhere
          if (report.host !== 'local') for (const m of report.modes) this.log(`boot ${m.boot} ran on ${m.host ?? report.host}`)
          for (const c of report.checks) this.log(`${c.verdict.padEnd(4)} ${c.mode}/${c.name}: ${c.evidence}`)
          const ssh = report.timings.bootToSshMs === undefined ? 'no boot reached SSH' : `boot to SSH ${(report.timings.bootToSshMs / 1000).toFixed(1)} s`
          this.log(`${report.verdict}: ${ssh}, total ${(report.timings.totalMs / 1000).toFixed(1)} s; reports in ${resolve(flags.out)}`)
        }
        if (report.verdict === 'failed') process.exitCode = ExitCode.failure
        return report
      },
      // QEMU is already killed (the abort reached every boot)
      {what: 'validation', hint: 'QEMU was stopped and temp files removed; run the same command again'},
    )
  }
}
