import {mkdtempSync, readFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, expect} from 'vitest'

import type {KernelCheckResult} from '../../src/kernel/check.js'
import {loadAllSeries} from '../../src/kernel/series.js'
import type {PatchResult} from '../../src/pipeline/results.js'
import {cli, type CliRun} from './cli.js'
import {oldKernelsArchive, repoRoot, sharedTestCache} from './paths.js'

/**
 * The proving recipes (backport-5.4, backport-5.8) through the CLI as a user runs them, on the real
 * old trees of ../shared/kernels/old-kernels.tar.zst (CVM_TEST_OLD_KERNELS overrides it), in the
 * shared test cache: one file per build, so that the builds of different lines run at once.
 */
export const archive = oldKernelsArchive()

export interface Check {
  mode: string
  name: string
  verdict: string
  evidence: string
}
export interface BuildJson {
  control: boolean
  stages: {stage: string; status: string; dir: string}[]
  validation?: {verdict: string; checks: Check[]}
  published?: unknown
}

/** A scratch working directory for the file's CLI runs (where ./out would land), removed after it. */
export function scratchCwd(): string {
  const cwd = mkdtempSync(join(tmpdir(), 'cvm-backports-'))
  afterAll(() => rm(cwd, {recursive: true, force: true}))
  return cwd
}

export const buildBackport = (cwd: string, id: string, ...extra: string[]): Promise<CliRun> =>
  cli(['build', id, '--kernel-source-file', archive, '--cache-dir', sharedTestCache(), '--json', ...extra], {cwd, timeoutMs: 55 * 60_000})

export function parseBuild(r: CliRun): BuildJson {
  expect(r.code, `${r.stderr.slice(-3000)}\n${r.stdout.slice(-3000)}`).toBe(0)
  return JSON.parse(r.stdout) as BuildJson
}

export const byName = (checks: Check[]) => Object.fromEntries(checks.map((c) => [c.name, c]))

export const stageDir = (b: {stages: {stage: string; dir: string}[]}, stage: string) => b.stages.find((s) => s.stage === stage)!.dir

/** What the patch stage did with each entry of the series (its result.json). */
export const patchResult = (b: {stages: {stage: string; dir: string}[]}): PatchResult => JSON.parse(readFileSync(join(stageDir(b, 'patch'), 'result.json'), 'utf8')) as PatchResult

export async function kernelCheck(cwd: string, id: string): Promise<KernelCheckResult> {
  const r = await cli(['kernel', 'check', id, '--kernel-source-file', archive, '--cache-dir', sharedTestCache(), '--json'], {cwd, timeoutMs: 10 * 60_000})
  expect(r.code, r.stderr).toBe(0)
  return JSON.parse(r.stdout) as KernelCheckResult
}

/** The backport entries of a line's series, as kernels/<line>/series.yaml lists them: "5.4/0100-….patch". */
export async function seriesBackports(line: string): Promise<string[]> {
  const [series] = await loadAllSeries(join(repoRoot, 'kernels'), [`${line}/series.yaml`])
  return series.entries.flatMap((e) => (e.kind === 'backport' ? [`${line}/${e.file}`] : []))
}
