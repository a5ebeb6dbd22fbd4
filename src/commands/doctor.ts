import {Flags} from '@oclif/core'

import {BaseCommand, type BaseFlags} from '../cli/base-command.js'
import {optionSet} from '../cli/flags.js'
import {runInterruptible} from '../cli/interrupt.js'
import {checkTools, installPackages, missingPackages, type ToolStatus} from '../doctor/check.js'
import {ExitCode} from '../errors.js'
import type {ParsedOptions} from '../pipeline/options.js'
import {describeHostReport, probeValidationHost, type HostReport} from '../validate/host-probe.js'

export interface DoctorResult {
  tools: ToolStatus[]
  missingPackages: string[]
  installed: string[]
  /** the validation host's capabilities: this machine's, or the (first) --host's */
  validationHost: HostReport
  /** with several hosts (--host repeated, --hosts-file): each one's, in their order */
  validationHosts?: HostReport[]
}

const DOCTOR_HOST = ['host', 'hosts-file', 'host-key', 'identity', 'identity-passphrase-file'] as const
const DOCTOR_OPTIONS = optionSet(DOCTOR_HOST, {host: {help: "report this validation host's SEV capability over SSH (user@host[:port]) instead of this machine's (repeatable: each host's)"}})

export default class Doctor extends BaseCommand {
  static summary = 'List the host tools each stage needs, found or missing, with the Debian package of each.'
  static description = `Exit code 0 when everything is found, 3 when something is missing.
With --install (as root) the missing Debian packages are installed with apt-get.`
  static examples = [
    '<%= config.bin %> doctor',
    'sudo <%= config.bin %> doctor --install',
    '<%= config.bin %> doctor --host root@amd-host.example.com --host-key SHA256:... --json',
  ]
  static flags = {
    install: Flags.boolean({description: 'install the missing Debian packages with apt-get (needs root)'}),
    ...DOCTOR_OPTIONS.flags,
  }

  async run(): Promise<DoctorResult> {
    const {flags} = await this.parse(Doctor)
    // the host's options are judged before anything is installed
    const o = DOCTOR_OPTIONS.parse(flags)
    return runInterruptible((signal) => this.doctor(flags, o, signal), {what: 'doctor', hint: 'run the same command again'})
  }

  private async doctor(flags: BaseFlags<typeof Doctor>, o: ParsedOptions<(typeof DOCTOR_HOST)[number]>, signal: AbortSignal): Promise<DoctorResult> {
    let tools = await checkTools()
    let installed: string[] = []
    if (flags.install && missingPackages(tools).length) {
      installed = missingPackages(tools)
      if (!this.jsonEnabled()) this.log(`installing: ${installed.join(' ')}`)
      await installPackages(installed, this.jsonEnabled() ? undefined : (l) => this.log(`  ${l}`), signal)
      tools = await checkTools()
    }
    const missing = missingPackages(tools)
    const targets = o['hosts-file'] ? o['hosts-file'].hosts.map((h) => ({host: h.address, hostKey: h.hostKey})) : (o.host ?? []).map((host) => ({host, ...o['host-key']}))
    const reports: HostReport[] = []
    for (const t of targets.length ? targets : [{}]) reports.push(await probeValidationHost({...t, identity: o.identity, identityPassphraseFile: o['identity-passphrase-file'], signal}))
    const [validationHost] = reports
    if (!this.jsonEnabled()) {
      const w = Math.max(...tools.map((t) => t.tool.length))
      for (const t of tools) this.log(`${t.found ? 'ok     ' : 'MISSING'}  ${t.tool.padEnd(w)}  ${t.package.padEnd(18)} ${t.stages.join(',')}: ${t.why}`)
      this.log(missing.length ? `\nmissing packages: ${missing.join(' ')}\ninstall them: sudo cvm-image doctor --install` : '\nall host tools found')
      this.log('')
      for (const r of reports) for (const l of describeHostReport(r)) this.log(l)
    }
    // A missing local tool is a failure; a host without SEV is a fact to report, not a failure.
    if (missing.length && !targets.length) process.exitCode = ExitCode.host
    return {tools, missingPackages: missing, installed, validationHost, ...(reports.length > 1 ? {validationHosts: reports} : {})}
  }
}
