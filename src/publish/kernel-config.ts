import {existsSync} from 'node:fs'
import {readdir, readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {type DotConfig, parseDotConfig, valueOf} from '../kernel/dotconfig.js'
import {canBeSnpGuest, type GuestSupport, type Verdict} from '../kernel/guest-support.js'
import type {BuildRecord} from '../pipeline/build-record.js'

/** A kernel .config (the one parser: src/kernel/dotconfig.ts) */
export type KernelConfig = DotConfig
export const parseKernelConfig = parseDotConfig

/** The config the published kernel was built with: compile's copy, else configure's. */
export async function readBuiltKernelConfig(record: BuildRecord): Promise<{path: string; config: KernelConfig} | undefined> {
  for (const stage of ['compile', 'configure'] as const) {
    const dir = record.stages[stage]?.dir
    if (dir && existsSync(join(dir, 'config'))) {
      const path = join(dir, 'config')
      return {path, config: parseKernelConfig(await readFile(path, 'utf8'))}
    }
  }
  return undefined
}

export function isBuiltIn(config: KernelConfig, option: string): boolean {
  return valueOf(config, option) === 'y'
}

export function isEnabled(config: KernelConfig, option: string): boolean {
  return ['y', 'm'].includes(valueOf(config, option))
}

/** What `kernel check` said of the built kernel: compile's kernel.json, else configure's result. */
export function recordedGuestSupport(record: BuildRecord): GuestSupport | undefined {
  return record.stages.compile?.meta.support ?? record.stages.configure?.meta.support
}

/**
 * "This kernel can be an SNP guest", for a finished build: the recorded kernel check (canBeSnpGuest).
 * The manifest's SEV_SNP_CAPABLE flag follows it, and so should its SNP launch digests.
 */
export function kernelCanBeSnpGuest(record: BuildRecord): Verdict {
  return canBeSnpGuest(recordedGuestSupport(record))
}

/** Whether the compile stage built the GVE driver: gve.ko among its modules, gve.ko in modules.builtin, or neither (also when its output is gone). */
export async function builtGve(record: BuildRecord): Promise<'module' | 'builtin' | 'absent'> {
  const compile = record.stages.compile
  const root = compile && join(compile.dir, 'modules', 'lib', 'modules')
  if (!root || !existsSync(root)) return 'absent'
  for (const release of await readdir(root)) {
    const dir = join(root, release)
    if (existsSync(join(dir, 'kernel', 'drivers', 'net', 'ethernet', 'google', 'gve', 'gve.ko'))) return 'module'
    const builtin = join(dir, 'modules.builtin')
    if (existsSync(builtin) && (await readFile(builtin, 'utf8')).split('\n').some((l) => l.endsWith('/gve.ko'))) return 'builtin'
  }
  return 'absent'
}
