import {existsSync} from 'node:fs'
import {mkdir, writeFile} from 'node:fs/promises'
import {userInfo} from 'node:os'
import {join} from 'node:path'

import {InputError} from '../../errors.js'
import {run} from '../../util/exec.js'
import {sha256} from '../../util/fsx.js'

/** The Debian archive keyring (debian-archive-keyring): it holds the keys of bullseye, bookworm and trixie. */
const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg'

/** A package as the suite's index describes it. */
export interface AptPackage {
  name: string
  version: string
  filename: string
  sha256: string
}

/**
 * apt with its own state, lists and cache under `root`, pointed at one mirror and suite: it fetches
 * packages of any Debian release from any Debian host, installs nothing and needs no root.
 */
export class PrivateApt {
  readonly root: string

  constructor(cacheRoot: string, readonly mirror: string, readonly suite: string, readonly components: string[] = ['main']) {
    this.root = join(cacheRoot, 'apt', sha256(`${mirror} ${suite} ${components.join(',')}`).slice(0, 16))
  }

  private options(): string[] {
    const r = this.root
    const user = userInfo().username
    return [
      '-o', `Dir::State=${r}/state`,
      '-o', `Dir::State::status=${r}/state/status`,
      '-o', `Dir::Etc::SourceList=${r}/etc/sources.list`,
      '-o', `Dir::Etc::SourceParts=${r}/etc/empty`,
      '-o', `Dir::Etc::Preferences=${r}/etc/preferences`,
      '-o', `Dir::Etc::PreferencesParts=${r}/etc/empty`,
      '-o', `Dir::Cache=${r}/cache`,
      '-o', 'Debug::NoLocking=1',
      // as root apt would hand downloads to _apt, which cannot write into our cache
      '-o', `APT::Sandbox::User=${user}`,
      '-o', 'APT::Architecture=amd64',
      '-o', 'Acquire::Languages=none',
    ]
  }

  async update(logFile?: string, signal?: AbortSignal): Promise<void> {
    const r = this.root
    for (const d of ['state/lists/partial', 'cache/archives/partial', 'etc/empty']) await mkdir(join(r, d), {recursive: true})
    if (!existsSync(join(r, 'state/status'))) await writeFile(join(r, 'state/status'), '')
    const signedBy = existsSync(KEYRING) ? `[signed-by=${KEYRING}] ` : ''
    await writeFile(join(r, 'etc/sources.list'), `deb ${signedBy}${this.mirror} ${this.suite} ${this.components.join(' ')}\n`)
    await run('apt-get', [...this.options(), 'update'], {
      logFile,
      signal,
      what: `read the package index of ${this.suite} at ${this.mirror}`,
      hint: 'check recipe.kernel.source.mirror and .suite, and that the mirror is reachable',
    })
  }

  /** The package's index entry: the suite's candidate, or the given version. */
  async show(name: string, version?: string): Promise<AptPackage> {
    const r = await run('apt-cache', [...this.options(), 'show', '--no-all-versions', version ? `${name}=${version}` : name], {reject: false})
    const field = (f: string) => new RegExp(`^${f}: (.+)$`, 'm').exec(r.stdout)?.[1]?.trim()
    const [v, filename, sum] = [field('Version'), field('Filename'), field('SHA256')]
    if (r.exitCode !== 0 || !v || !filename || !sum) {
      throw new InputError(`package ${name}${version ? ` ${version}` : ''} is not in ${this.suite} at ${this.mirror}`, {
        hint: 'check recipe.kernel.source.package / .version (e.g. linux-source-5.10 in bullseye, linux-source-6.1 in bookworm)',
      })
    }
    return {name, version: v, filename, sha256: sum}
  }

  /** Downloads the package's .deb into dir (apt checks it against the signed index); returns its path. */
  async download(pkg: AptPackage, dir: string, logFile?: string, signal?: AbortSignal): Promise<string> {
    await mkdir(dir, {recursive: true})
    await run('apt-get', [...this.options(), 'download', `${pkg.name}=${pkg.version}`], {
      cwd: dir,
      logFile,
      signal,
      what: `download ${pkg.name} ${pkg.version}`,
    })
    // apt-get download names the file <name>_<version with : as %3a>_<arch>.deb, as the pool does
    return join(dir, pkg.filename.split('/').at(-1)!)
  }
}
