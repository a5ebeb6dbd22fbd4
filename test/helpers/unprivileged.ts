import {execFileSync} from 'node:child_process'
import {chownSync, existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {run, type ExecOptions, type ExecResult} from '../../src/util/exec.js'
import type {StageResult} from '../../src/pipeline/stage.js'
import type {LoadedRecipe} from '../../src/recipe/load.js'
import type {BuildOptions} from '../../src/pipeline/stage.js'
import type {StageResultTypes} from '../../src/pipeline/results.js'
import {repoRoot} from './paths.js'

/**
 * Runs parts of a test as an unprivileged user, as an unprivileged CI container would: CI runs
 * the suite as root, so the rootless claim is only tested once privileges are dropped.
 */
export interface UnprivilegedUser {
  name: string
  uid: number
  gid: number
}

/** the user the tests create; it gets a subordinate id range so mmdebstrap's unshare mode works */
export const TEST_USER = 'cvm-image-test'
const SUBID_RANGE = '300000-365535'

function id(args: string[]): string {
  return execFileSync('id', args).toString().trim()
}

/**
 * The unprivileged user: when the tests run as root, TEST_USER (created if missing, with
 * /etc/subuid and /etc/subgid ranges); otherwise the current user.
 */
export function ensureUnprivilegedUser(): UnprivilegedUser {
  if (process.getuid?.() !== 0) return {name: id(['-un']), uid: process.getuid!(), gid: process.getgid!()}
  let exists = true
  try {
    execFileSync('getent', ['passwd', TEST_USER], {stdio: 'ignore'})
  } catch {
    exists = false
  }
  if (!exists) execFileSync('useradd', ['--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--user-group', TEST_USER])
  for (const [file, flag] of [['/etc/subuid', '--add-subuids'], ['/etc/subgid', '--add-subgids']] as const) {
    if (!existsSync(file)) writeFileSync(file, '')
    if (!readFileSync(file, 'utf8').split('\n').some((l) => l.startsWith(`${TEST_USER}:`))) execFileSync('usermod', [flag, SUBID_RANGE, TEST_USER])
  }
  return {name: TEST_USER, uid: Number(id(['-u', TEST_USER])), gid: Number(id(['-g', TEST_USER]))}
}

/** A directory the unprivileged user owns. */
export function unprivilegedDir(path: string, user: UnprivilegedUser): string {
  mkdirSync(path, {recursive: true})
  if (process.getuid?.() === 0) chownSync(path, user.uid, user.gid)
  return path
}

/** Runs a command as the user: setpriv drops uid, gid, supplementary groups and inheritable capabilities. */
export async function runAs(user: UnprivilegedUser, cmd: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  if (process.getuid?.() !== 0) return run(cmd, args, opts)
  return run('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', '--inh-caps=-all', '--', cmd, ...args], {
    ...opts,
    env: {HOME: '/tmp', USER: user.name, LOGNAME: user.name, ...opts.env},
  })
}

/** Runs a stage (test/helpers/run-stage.ts) as the user, in dirs it owns under `root`; returns its meta (null when it failed). */
export async function runStageAs<S extends 'base' | 'assemble'>(
  user: UnprivilegedUser,
  spec: {stage: S; recipe: LoadedRecipe; root: string; cacheDir: string; upstream?: Partial<Record<string, StageResult>>; options?: BuildOptions},
): Promise<{meta: StageResultTypes[S] | null; out: string; stderr: string; exitCode: number}> {
  const root = unprivilegedDir(spec.root, user)
  const out = unprivilegedDir(join(root, 'out'), user)
  const work = unprivilegedDir(join(root, 'work'), user)
  const specFile = join(root, 'spec.json')
  writeFileSync(specFile, JSON.stringify({stage: spec.stage, recipe: spec.recipe, out, work, cacheDir: spec.cacheDir, upstream: spec.upstream, options: spec.options, logFile: join(root, 'stage.log')}))
  const r = await runAs(user, process.execPath, ['--import', 'tsx', join(repoRoot, 'test/helpers/run-stage.ts'), specFile], {cwd: repoRoot, reject: false})
  const last = r.stdout.trim().split('\n').at(-1) ?? ''
  // run-stage.ts prints what the stage's run() returned
  return {meta: r.exitCode === 0 ? (JSON.parse(last) as StageResultTypes[S]) : null, out, stderr: r.stderr, exitCode: r.exitCode}
}
