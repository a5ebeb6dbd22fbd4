import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {checkTools, installPackages, missingPackages, type ToolStatus} from '../doctor/check.js'
import {ExitCode} from '../errors.js'

export interface DoctorResult {
  tools: ToolStatus[]
  missingPackages: string[]
  installed: string[]
}

export default class Doctor extends BaseCommand {
  static summary = 'List the host tools each stage needs, found or missing, with the Debian package of each.'
  static description = `Exit code 0 when everything is found, 3 when something is missing.
With --install (as root) the missing Debian packages are installed with apt-get.`
  static examples = ['<%= config.bin %> doctor', 'sudo <%= config.bin %> doctor --install', '<%= config.bin %> doctor --json']
  static flags = {
    install: Flags.boolean({description: 'install the missing Debian packages with apt-get (needs root)'}),
  }

  async run(): Promise<DoctorResult> {
    const {flags} = await this.parse(Doctor)
    let tools = await checkTools()
    let installed: string[] = []
    if (flags.install && missingPackages(tools).length) {
      installed = missingPackages(tools)
      if (!this.jsonEnabled()) this.log(`installing: ${installed.join(' ')}`)
      await installPackages(installed, this.jsonEnabled() ? undefined : (l) => this.log(`  ${l}`))
      tools = await checkTools()
    }
    const missing = missingPackages(tools)
    if (!this.jsonEnabled()) {
      const w = Math.max(...tools.map((t) => t.tool.length))
      for (const t of tools) this.log(`${t.found ? 'ok     ' : 'MISSING'}  ${t.tool.padEnd(w)}  ${t.package.padEnd(18)} ${t.stages.join(',')}: ${t.why}`)
      this.log(missing.length ? `\nmissing packages: ${missing.join(' ')}\ninstall them: sudo cvm-image doctor --install` : '\nall host tools found')
    }
    if (missing.length) process.exitCode = ExitCode.host
    return {tools, missingPackages: missing, installed}
  }
}
