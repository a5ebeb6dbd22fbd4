import {execFileSync} from 'node:child_process'
import {chownSync, mkdirSync} from 'node:fs'
import {join} from 'node:path'

import {run, type RunOptions, type RunResult} from '../../src/util/exec.js'
import {repoRoot} from './paths.js'

/**
 * Runs a part of a test as an unprivileged user, as an unprivileged CI container would: CI runs
 * the suite as root, so the rootless claim is only tested once privileges are dropped.
 */
export interface UnprivilegedUser {
  name: string
  group: string
  uid: number
  gid: number
}

/** nobody:nogroup exists on every Debian system; when already not root, the current user. */
export function unprivilegedUser(): UnprivilegedUser {
  if (process.getuid?.() !== 0) {
    const name = execFileSync('id', ['-un']).toString().trim()
    return {name, group: execFileSync('id', ['-gn']).toString().trim(), uid: process.getuid!(), gid: process.getgid!()}
  }
  const uid = Number(execFileSync('id', ['-u', 'nobody']).toString())
  const gid = Number(execFileSync('getent', ['group', 'nogroup']).toString().split(':')[2])
  return {name: 'nobody', group: 'nogroup', uid, gid}
}

/** A directory the unprivileged user owns, for its work and outputs. */
export function unprivilegedDir(path: string, user = unprivilegedUser()): string {
  mkdirSync(path, {recursive: true})
  if (process.getuid?.() === 0) chownSync(path, user.uid, user.gid)
  return path
}

/** Runs a command as the unprivileged user (setpriv: no groups, no capabilities kept). */
export async function runUnprivileged(cmd: string, args: string[], opts: RunOptions = {}, user = unprivilegedUser()): Promise<RunResult> {
  if (process.getuid?.() !== 0) return run(cmd, args, opts)
  return run('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', '--inh-caps=-all', '--', cmd, ...args], {
    ...opts,
    env: {HOME: '/tmp', ...opts.env},
  })
}

/** A TypeScript script run with tsx as the unprivileged user; prints its own output. */
export async function runScriptUnprivileged(script: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return runUnprivileged(process.execPath, ['--import', 'tsx', script, ...args], {cwd: repoRoot, ...opts})
}

export const helpersDir = join(repoRoot, 'test', 'helpers')
