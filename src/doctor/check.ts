import {access, constants} from 'node:fs/promises'

import {HostError} from '../errors.js'
import {run, which} from '../util/exec.js'
import type {ToolRequirement} from './requirement.js'
import {REQUIREMENTS} from './requirements.js'

export interface ToolStatus extends ToolRequirement {
  found: boolean
  path?: string
}

export async function checkTools(reqs: ToolRequirement[] = REQUIREMENTS): Promise<ToolStatus[]> {
  return Promise.all(
    reqs.map(async (r) => {
      const path = r.tool.startsWith('/') ? await access(r.tool, constants.R_OK).then(() => r.tool, () => undefined) : await which(r.tool)
      return {...r, found: path !== undefined, path}
    }),
  )
}

export function missingPackages(status: ToolStatus[]): string[] {
  return [...new Set(status.filter((s) => !s.found).map((s) => s.package))].sort()
}

/** apt-get install of the missing packages; needs root. */
export async function installPackages(pkgs: string[], onLine?: (l: string) => void, signal?: AbortSignal): Promise<void> {
  if (!pkgs.length) return
  if (process.getuid?.() !== 0) {
    throw new HostError(`installing ${pkgs.join(' ')} needs root`, {hint: `run as root, or: sudo apt-get install -y ${pkgs.join(' ')}`})
  }
  const env = {DEBIAN_FRONTEND: 'noninteractive'}
  await run('apt-get', ['update', '-q'], {env, onLine, signal, what: 'refresh the package lists'})
  await run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...pkgs], {env, onLine, signal, what: 'install host tools'})
}
