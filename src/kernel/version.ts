import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {InputError} from '../errors.js'

/** A kernel version: 6.1.192 is {major: 6, minor: 1, patch: 192}; "5.10" has patch 0. */
export interface KernelVersion {
  major: number
  minor: number
  patch: number
}

export function parseVersion(text: string): KernelVersion {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(text.trim())
  if (!m) throw new InputError(`"${text}" is not a kernel version`, {hint: 'give a version such as 5.10, 5.10.223 or 6.1'})
  return {major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3] ?? 0)}
}

export function formatVersion(v: KernelVersion): string {
  return `${v.major}.${v.minor}.${v.patch}`
}

/** The line a version belongs to, e.g. "5.10". */
export function lineOf(v: KernelVersion): string {
  return `${v.major}.${v.minor}`
}

export function compareVersions(a: KernelVersion, b: KernelVersion): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch
}

export function atLeast(v: KernelVersion | string, min: KernelVersion | string): boolean {
  const a = typeof v === 'string' ? parseVersion(v) : v
  const b = typeof min === 'string' ? parseVersion(min) : min
  return compareVersions(a, b) >= 0
}

/**
 * Whether a change that landed in mainline `mainline` and was backported to the stable
 * releases `stable` is in `v`: v is at least the mainline release, or v is on one of the
 * stable lines at or past the release that took the backport.
 */
export function contains(v: KernelVersion, mainline: string, stable: readonly string[] = []): boolean {
  if (atLeast(v, mainline)) return true
  return stable.some((s) => {
    const sv = parseVersion(s)
    return sv.major === v.major && sv.minor === v.minor && v.patch >= sv.patch
  })
}

/** The version a source tree's top Makefile declares (VERSION, PATCHLEVEL, SUBLEVEL). */
export async function treeVersion(tree: string): Promise<KernelVersion> {
  const file = join(tree, 'Makefile')
  const text = await readFile(file, 'utf8').catch(() => {
    throw new InputError(`${file}: cannot read the kernel Makefile`, {hint: 'the source is not a Linux kernel tree; check recipe.kernel.source'})
  })
  const field = (name: string) => new RegExp(`^${name}\\s*=\\s*(\\d+)\\s*$`, 'm').exec(text)?.[1]
  const [major, minor, patch] = [field('VERSION'), field('PATCHLEVEL'), field('SUBLEVEL')]
  if (major === undefined || minor === undefined) {
    throw new InputError(`${file}: no VERSION/PATCHLEVEL lines`, {hint: 'the source is not a Linux kernel tree; check recipe.kernel.source'})
  }
  return {major: Number(major), minor: Number(minor), patch: Number(patch ?? 0)}
}

/** The version a .config was generated for, from its "# Linux/x86 6.1.192 Kernel Configuration" header. */
export function configVersion(configText: string): KernelVersion | undefined {
  const m = /^# Linux\/\S+ (\d+\.\d+(?:\.\d+)?)\S* Kernel Configuration/m.exec(configText)
  return m ? parseVersion(m[1]) : undefined
}
