import {lstatSync, readlinkSync} from 'node:fs'
import {realpath} from 'node:fs/promises'

import {HostError} from '../errors.js'
import {run, type ExecOptions, type ExecResult} from './exec.js'

/**
 * Runs a tool that reads untrusted input where it can open nothing but that input and its output
 * (issue #17: a parser bug in qemu-img, or a reference the header check missed, must not reach a
 * host file). bubblewrap gives the tool new namespaces of every kind (mount, network, IPC, PID,
 * UTS, user) and a root that holds only: /usr read-only (programs and libraries: no host data),
 * the compatibility links to it (/bin, /lib, ...), a minimal /dev (null, zero, random; no disks),
 * and the files it is given, bound at fixed paths. No /etc, /home, /root, /proc, /tmp, /var, cache
 * or block device is there, and no network. As root and without (unprivileged user namespaces) it
 * works alike; where the kernel refuses an unprivileged user namespace, the run fails as a
 * HostError saying so: there is no unconfined fallback.
 */

export interface Confined {
  /** host path -> path inside, read-only */
  readOnly: Array<{host: string; inside: string}>
  /** host path -> path inside, writable (an existing file: bind a file, not its directory) */
  writable: Array<{host: string; inside: string}>
  /** the working directory inside (default /) */
  chdir?: string
  /** environment inside, beside PATH and LC_ALL (the host's is cleared) */
  env?: Record<string, string>
}

/** Top-level names that are, on a merged-/usr host, links into /usr; bound as they are on this host. */
const USR_LINKS = ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']

/** bubblewrap's arguments for a root holding /usr, a minimal /dev and the given binds. */
export async function sandboxArgs(paths: Confined): Promise<string[]> {
  const args = ['--unshare-all', '--die-with-parent', '--new-session', '--clearenv', '--setenv', 'PATH', '/usr/bin:/usr/sbin', '--setenv', 'LC_ALL', 'C', '--ro-bind', '/usr', '/usr', '--dev', '/dev']
  for (const link of USR_LINKS) {
    const st = lstatSync(link, {throwIfNoEntry: false})
    if (!st) continue
    if (st.isSymbolicLink()) args.push('--symlink', readlinkSync(link), link)
    else if (st.isDirectory()) args.push('--ro-bind', link, link)
  }
  // bind the real files: a symlink would be resolved inside, where its target does not exist
  for (const b of paths.readOnly) args.push('--ro-bind', await realpath(b.host), b.inside)
  for (const b of paths.writable) args.push('--bind', await realpath(b.host), b.inside)
  for (const [name, value] of Object.entries(paths.env ?? {})) args.push('--setenv', name, value)
  args.push('--chdir', paths.chdir ?? '/')
  return args
}

/** bubblewrap's own failures start so; the tool's messages do not */
const BWRAP_ERROR = /^bwrap: (.*)$/m

/**
 * Runs `cmd args` (paths in args as seen inside) confined to `paths` and returns how it ended: the
 * caller reads the tool's exit status. Fails as a HostError (exit 3) when the sandbox itself cannot
 * be made.
 */
export async function runConfined(cmd: string, args: readonly string[], paths: Confined, opts: Omit<ExecOptions, 'reject'> = {}): Promise<ExecResult> {
  const r = await run('bwrap', [...(await sandboxArgs(paths)), '--', cmd, ...args], {...opts, reject: false})
  const setup = BWRAP_ERROR.exec(r.stderr)
  if (r.exitCode !== 0 && setup) {
    throw new HostError(`cannot confine ${cmd} on this host: bubblewrap says: ${setup[1]}`, {
      details: [`${cmd} reads untrusted input, so cvm-image runs it only where it can open nothing but its input and output (a mount namespace made by bubblewrap); it does not run it unconfined.`],
      hint: 'run the build as root, or allow unprivileged user namespaces (Debian: sysctl kernel.unprivileged_userns_clone=1; Ubuntu 24.04+: sysctl kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile for bwrap); inside a container, allow it to create namespaces (e.g. Docker --security-opt seccomp=unconfined, or podman)',
    })
  }
  return r
}
