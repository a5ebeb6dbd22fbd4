import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {buildUntil} from './pipeline.js'

/** A debian-12 disk for the boot tests, and what its kernel must report. */
export interface DiskUnderTest {
  disk: string
  release?: string
  version?: string
  diskSha256?: string
  ukiSha256?: string
  from: string
}

/**
 * CVM_TEST_DISK (+ CVM_TEST_KERNEL_JSON: compile's kernel.json) when set, e.g. a helper's development
 * artifact; otherwise the real pipeline builds debian-12 up to assemble in the shared test cache (a
 * cache hit when the end-to-end test built it already).
 */
export async function debian12Disk(): Promise<DiskUnderTest> {
  if (process.env.CVM_TEST_DISK) {
    const kj = process.env.CVM_TEST_KERNEL_JSON
    const k = kj && existsSync(kj) ? (JSON.parse(await readFile(kj, 'utf8')) as {release?: string; version?: string}) : {}
    return {disk: process.env.CVM_TEST_DISK, release: k.release, version: k.version, from: 'CVM_TEST_DISK'}
  }
  const r = await buildUntil('debian-12', 'assemble')
  const a = r.results.assemble!
  const c = r.results.compile?.meta as {release?: string; version?: string} | undefined
  const am = a.meta as {diskSha256?: string; ukiSha256?: string}
  return {disk: join(a.dir, 'disk.raw'), release: c?.release, version: c?.version, diskSha256: am.diskSha256, ukiSha256: am.ukiSha256, from: 'pipeline (shared test cache)'}
}
