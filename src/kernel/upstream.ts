import {existsSync} from 'node:fs'
import {isAbsolute, join, resolve} from 'node:path'

import {InputError} from '../errors.js'
import {run} from '../util/exec.js'
import {atomicWriteFile, sha256} from '../util/fsx.js'

export interface UpstreamCommitRef {
  id: string
  subject: string
  mainline: string
  series: string
}

/**
 * Upstream commits as patch files, fetched from a kernel git the user gives (a local clone or a
 * URL) with git fetch + git format-patch, and cached by commit id under cacheDir/upstream-patches.
 * The repository never holds upstream patch text; only ids.
 */
export class UpstreamPatches {
  private readonly dir: string

  constructor(private readonly cacheDir: string, private readonly kernelGit: string | undefined, private readonly logFile?: string) {
    this.dir = join(cacheDir, 'upstream-patches')
  }

  cachedPath(id: string): string {
    return join(this.dir, `${id}.patch`)
  }

  async resolve(c: UpstreamCommitRef): Promise<string> {
    const file = this.cachedPath(c.id)
    if (existsSync(file)) return file
    if (!this.kernelGit) {
      throw new InputError(`series ${c.series} needs upstream commit ${c.id} ("${c.subject}", mainline ${c.mainline}), which is not cached`, {
        hint: 'give a kernel git to fetch it from: --kernel-git <path of a Linux clone | URL>',
      })
    }
    const repo = await this.repoHolding(c)
    const full = await run('git', ['-C', repo, 'rev-parse', '--verify', '--quiet', `${c.id}^{commit}`], {reject: false})
    if (full.exitCode !== 0) {
      throw new InputError(`upstream commit ${c.id} ("${c.subject}") is not in ${this.kernelGit}`, {
        hint: `the series (${c.series}) names a commit that kernel git lacks: fetch mainline ${c.mainline} into it, or fix the id`,
      })
    }
    const commit = full.stdout.trim()
    const patch = await run('git', ['-C', repo, 'format-patch', '-1', '--stdout', '--no-signature', '--zero-commit', '--full-index', commit], {
      what: `format upstream commit ${c.id} as a patch`,
      logFile: this.logFile,
    })
    await atomicWriteFile(file, patch.stdout.endsWith('\n') ? patch.stdout : patch.stdout + '\n')
    return file
  }

  /** A local clone is read in place; a URL is fetched into a bare cache repository. */
  private async repoHolding(c: UpstreamCommitRef): Promise<string> {
    const given = this.kernelGit!
    const local = !/^[a-z+]+:\/\//.test(given) && !/^[^/]+@[^:]+:/.test(given)
    if (local) {
      const path = isAbsolute(given) ? given : resolve(given)
      if (!existsSync(path)) throw new InputError(`--kernel-git ${given}: no such directory`, {hint: 'give the path of a Linux git clone, or a git URL'})
      return path
    }
    const repo = join(this.cacheDir, 'git', `upstream-${sha256(given).slice(0, 16)}`)
    if (!existsSync(join(repo, 'HEAD'))) await run('git', ['init', '-q', '--bare', repo], {what: 'make the upstream git cache'})
    const have = await run('git', ['-C', repo, 'rev-parse', '--verify', '--quiet', `${c.id}^{commit}`], {reject: false})
    if (have.exitCode === 0) return repo
    // A full id can be fetched alone (with its parent, for the diff); a short one needs the mainline tag's history.
    const what = c.id.length === 40 ? [c.id] : [`refs/tags/v${c.mainline}:refs/tags/v${c.mainline}`]
    await run('git', ['-C', repo, 'fetch', ...(c.id.length === 40 ? ['--depth=2'] : ['--filter=blob:none']), given, ...what], {
      what: `fetch upstream commit ${c.id} from ${given}`,
      logFile: this.logFile,
      hint: 'check --kernel-git; a mirror of torvalds/linux (or a stable tree) carries every mainline commit',
    })
    return repo
  }
}
