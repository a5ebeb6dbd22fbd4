import {existsSync, readFileSync} from 'node:fs'
import {userInfo} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {HostError} from '../../errors.js'
import type {RecipeBase} from '../../recipe/schema.js'
import {run, which} from '../../util/exec.js'

type MmdebstrapSpec = Extract<RecipeBase, {kind: 'mmdebstrap'}>

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
/**
 * The --customize-hook that removes what differs between two runs with the same inputs (generated
 * ssh host keys, the build host's hostname and resolv.conf): an executable mmdebstrap runs with the root as $1.
 */
export const REPRODUCIBLE_HOOK = join(packageRoot, 'src', 'distro', 'debian', 'mmdebstrap-hooks', 'reproducible.sh')

/**
 * mmdebstrap's mode: as root, `root`; otherwise `unshare`, which needs user namespaces, newuidmap
 * (package uidmap) and a subordinate id range for the user in /etc/subuid and /etc/subgid.
 */
export async function mmdebstrapMode(): Promise<'root' | 'unshare'> {
  if (process.getuid?.() === 0) return 'root'
  const user = userInfo().username
  const missing: string[] = []
  if (!(await which('newuidmap')) || !(await which('newgidmap'))) missing.push('newuidmap/newgidmap (apt-get install uidmap)')
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    const ranges = existsSync(file) ? readFileSync(file, 'utf8') : ''
    if (!ranges.split('\n').some((l) => l.startsWith(`${user}:`) || l.startsWith(`${process.getuid?.()}:`))) missing.push(`a range for ${user} in ${file} (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${user})`)
  }
  const maxNs = existsSync('/proc/sys/user/max_user_namespaces') ? Number(readFileSync('/proc/sys/user/max_user_namespaces', 'utf8')) : 0
  if (maxNs === 0) missing.push('user namespaces (sysctl user.max_user_namespaces is 0)')
  if (missing.length) {
    throw new HostError(`mmdebstrap cannot run without root here: its unshare mode needs ${missing.join('; ')}`, {
      hint: 'fix the above, run the base stage as root, or give the base as a rootfs tarball (recipe.base.kind: image)',
    })
  }
  return 'unshare'
}

export function mmdebstrapArgs(spec: MmdebstrapSpec, mode: string, output: string): string[] {
  const args = [`--mode=${mode}`, `--variant=${spec.variant}`, `--components=${spec.components.join(',')}`, '--format=tar']
  if (spec.packages.length) args.push(`--include=${spec.packages.join(',')}`)
  args.push(`--customize-hook=${REPRODUCIBLE_HOOK}`)
  return [...args, spec.suite, output, spec.mirror]
}

/**
 * Builds the base rootfs tarball with mmdebstrap: times inside are clamped to SOURCE_DATE_EPOCH and
 * REPRODUCIBLE_HOOK removes what would still differ, so the same inputs and mirror content give the same bytes.
 */
export async function mmdebstrapRootfs(spec: MmdebstrapSpec, output: string, opts: {sourceDateEpoch: number; tmpDir: string; logFile?: string; signal?: AbortSignal; onLine?: (l: string) => void}): Promise<void> {
  const mode = await mmdebstrapMode()
  await run('mmdebstrap', mmdebstrapArgs(spec, mode, output), {
    what: `build the ${spec.suite} rootfs`,
    // its chroot goes under TMPDIR: inside the stage's temp dir, which the cache sweeps after a crash
    env: {SOURCE_DATE_EPOCH: String(opts.sourceDateEpoch), LC_ALL: 'C.UTF-8', TMPDIR: opts.tmpDir},
    logFile: opts.logFile,
    signal: opts.signal,
    onLine: opts.onLine,
    hint: `mirror ${spec.mirror}: check that the suite "${spec.suite}" and every package in recipe.base.packages exist there`,
  })
}
