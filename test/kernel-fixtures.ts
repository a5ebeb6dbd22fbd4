import {cpSync, mkdirSync, mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

import {stringify} from 'yaml'

import {StageCache} from '../src/pipeline/cache.js'
import type {ForceSpec} from '../src/pipeline/plan.js'
import {runStages, type RunStagesResult} from '../src/pipeline/run.js'
import type {BuildOptions, StageName} from '../src/pipeline/stage.js'
import {compileStage} from '../src/pipeline/stages/compile.js'
import {configureStage} from '../src/pipeline/stages/configure.js'
import {kernelSourceStage} from '../src/pipeline/stages/kernel-source.js'
import {patchStage} from '../src/pipeline/stages/patch.js'
import {projectDirs, RecipeStore, type ProjectDirs} from '../src/recipe/load.js'
import {sha256File} from '../src/util/fsx.js'
import {repoRoot, sharedTestCache} from './helpers/paths.js'

/** The real Linux 6.1 source Debian installs (package linux-source-6.1). */
export const LINUX_6_1_TARBALL = '/usr/src/linux-source-6.1.tar.xz'

let tarballSha: string | undefined
export async function linux61Sha256(): Promise<string> {
  tarballSha ??= await sha256File(LINUX_6_1_TARBALL)
  return tarballSha
}

export interface KernelProjectSpec {
  /** files under kernels/ (series YAML and .patch files), path -> text */
  kernelFiles?: Record<string, string>
  series?: string[]
  features?: string[]
  base?: 'lean' | 'defconfig'
  options?: Record<string, string>
}

/**
 * A temp project root with the repository's features and fragments, the given series files,
 * and one recipe "t" whose kernel source is the real linux-source-6.1 tarball (file:// + sha256).
 */
export async function kernelProject(spec: KernelProjectSpec): Promise<ProjectDirs> {
  const root = mkdtempSync(join(tmpdir(), 'cvm-kernel-test-'))
  const dirs = projectDirs(root)
  cpSync(join(repoRoot, 'kernels', 'features'), join(dirs.kernels, 'features'), {recursive: true})
  cpSync(join(repoRoot, 'kernels', 'fixes.yaml'), join(dirs.kernels, 'fixes.yaml'))
  cpSync(join(repoRoot, 'templates', 'kernel'), join(dirs.templates, 'kernel'), {recursive: true})
  const files = {'6.1/series.yaml': 'title: empty\npatches: []\n', ...spec.kernelFiles}
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dirs.kernels, path)), {recursive: true})
    writeFileSync(join(dirs.kernels, path), text)
  }
  const recipe = {
    name: 'kernel stage test',
    status: 'buildable-here',
    distro: {family: 'debian', release: '12', kernel: '6.1'},
    source_date_epoch: 1735689600,
    base: {kind: 'mmdebstrap', suite: 'bookworm', mirror: 'http://deb.debian.org/debian'},
    kernel: {
      line: '6.1',
      upstream_version: '6.1',
      source: {kind: 'tarball', url: `file://${LINUX_6_1_TARBALL}`, sha256: await linux61Sha256()},
      series: spec.series ?? ['6.1/series.yaml'],
      config: {base: spec.base ?? 'lean', features: spec.features ?? ['sev'], options: spec.options ?? {}},
      sev_es: 'mainline since 5.10',
    },
    image: {size_gib: 2, kernel_hold: {method: 'none'}},
  }
  mkdirSync(dirs.recipes, {recursive: true})
  writeFileSync(join(dirs.recipes, 't.yaml'), stringify(recipe))
  return dirs
}

/** The kernel stages alone: these tests need no rootfs. */
export const KERNEL_STAGES = [kernelSourceStage, patchStage, configureStage, compileStage]

/** Runs recipe "t" of a kernel project up to a stage, in the shared test cache (trees are cached by digest there). */
export async function runKernelProject(dirs: ProjectDirs, until: StageName, opts: {options?: BuildOptions; force?: ForceSpec; cacheDir?: string} = {}): Promise<RunStagesResult> {
  const recipe = new RecipeStore(dirs).load('t')
  const cacheDir = opts.cacheDir ?? sharedTestCache()
  return runStages({recipe, dirs, options: {jobs: 2, ...opts.options}, cacheDir}, new StageCache(cacheDir), KERNEL_STAGES, {until, renderer: 'silent', force: opts.force})
}
