import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {type DotConfig, parseDotConfig, valueOf} from '../kernel/dotconfig.js'
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
