import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import type {BuildRecord} from '../pipeline/build-record.js'

/** A kernel .config as option -> value (y, m, "string", number); unset options are absent. */
export type KernelConfig = Map<string, string>

export function parseKernelConfig(text: string): KernelConfig {
  const config: KernelConfig = new Map()
  for (const line of text.split('\n')) {
    const m = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line.trim())
    if (m) config.set(m[1], m[2])
  }
  return config
}

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
  return config.get(option) === 'y'
}

export function isEnabled(config: KernelConfig, option: string): boolean {
  return config.get(option) === 'y' || config.get(option) === 'm'
}
