import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {Command, Flags, type Interfaces} from '@oclif/core'

import {BugError, CvmError, ExitCode, isCvmError} from '../errors.js'
import {projectDirs, type ProjectDirs} from '../recipe/load.js'

/** The repository (or installed package) root: where recipes/, kernels/ and templates/ live. */
export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>

/**
 * Every command: `--json` prints the typed result (and, on failure, {error:{message,details,hint,exitCode}});
 * errors become documented exit codes (README "Exit codes").
 */
export abstract class BaseCommand extends Command {
  static enableJsonFlag = true

  static baseFlags = {
    root: Flags.directory({
      description: 'project root holding recipes/, kernels/ and templates/',
      env: 'CVM_IMAGE_ROOT',
      helpGroup: 'GLOBAL',
    }),
  }

  protected dirs(root?: string): ProjectDirs {
    return projectDirs(root ?? packageRoot)
  }

  protected async catch(err: Error & {exitCode?: number}): Promise<unknown> {
    // oclif's own parse errors (unknown flag, missing arg) are usage errors.
    const isParse = err.constructor?.name?.endsWith('Error') && (err as {oclif?: {exit?: number}}).oclif?.exit === 2
    const e: CvmError = isCvmError(err) ? err : isParse ? new CvmError(err.message, {exitCode: ExitCode.input, hint: `see \`cvm-image ${this.id ?? ''} --help\``}) : new BugError(err.stack ?? err.message)
    if (this.jsonEnabled()) {
      this.logJson({error: {message: e.message, details: e.details, hint: e.hint, exitCode: e.exitCode}})
    } else {
      process.stderr.write(`cvm-image: ${e.render()}\n`)
    }
    process.exitCode = e.exitCode
    this.exit(e.exitCode)
  }
}
