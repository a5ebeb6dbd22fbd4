import {existsSync, mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {countingStages} from '../../test/fixtures/counting-stages.js'
import {InputError} from '../errors.js'
import {StageCache} from '../pipeline/cache.js'
import type {BuildContext} from '../pipeline/stage.js'
import type {LoadedRecipe} from '../recipe/load.js'
import {runBuild} from './service.js'

let cacheDir: string
beforeEach(() => {
  cacheDir = mkdtempSync(join(tmpdir(), 'cvm-service-'))
})
afterEach(() => rmSync(cacheDir, {recursive: true, force: true}))

function context(recipe: Record<string, unknown> = {}, options: BuildContext['options'] = {}): BuildContext {
  const r = {id: 'svc', abstract: false, source_date_epoch: 1700000000, distro: {family: 'debian', release: '12', kernel: '6.1'}, kernel: {source: {kind: 'tarball', url: 'https://x/y.tar', sha256: 'a'.repeat(64)}}, ...recipe}
  return {recipe: {recipe: r, files: [], digest: 'd'} as unknown as LoadedRecipe, dirs: {root: '.', recipes: '.', kernels: '.', templates: '.'}, options, cacheDir}
}

describe('build service (no CLI)', () => {
  it('runs the stages, writes the build record and returns the outcomes; nothing is published without a target', async () => {
    const runs: string[] = []
    const r = await runBuild({ctx: context(), cache: new StageCache(cacheDir), stages: countingStages({}, runs), renderer: 'silent'})
    // base and kernel-source need nothing, so they run at once and either may start first; the rest follow their needs
    expect([...runs].sort()).toEqual(['assemble', 'base', 'kernel-source', 'patch'])
    expect(runs.indexOf('patch')).toBeGreaterThan(runs.indexOf('kernel-source'))
    expect(runs.at(-1)).toBe('assemble')
    expect(r).toMatchObject({recipe: 'svc', control: false, recipeDigest: 'd', buildRecord: join(cacheDir, 'builds', 'svc.json')})
    expect(r.stages.map((s) => s.status)).toEqual(['ran', 'ran', 'ran', 'ran'])
    expect(r.published).toBeUndefined()
    const record = JSON.parse(readFileSync(r.buildRecord, 'utf8'))
    expect(Object.keys(record.stages)).toEqual(['base', 'kernel-source', 'patch', 'assemble'])
  })

  it('--until keeps its record apart from the last complete build, and a control build too; neither publishes', async () => {
    const stages = countingStages({}, [])
    const partial = await runBuild({ctx: context(), cache: new StageCache(cacheDir), stages, until: 'patch', renderer: 'silent', publish: {target: {kind: 'dir', path: join(cacheDir, 'out')}}})
    expect(partial.buildRecord).toBe(join(cacheDir, 'builds', 'svc.partial.json'))
    expect(partial.published).toBeUndefined()
    const control = await runBuild({ctx: context({}, {control: true}), cache: new StageCache(cacheDir), stages, renderer: 'silent', publish: {target: {kind: 'dir', path: join(cacheDir, 'out')}}})
    expect(control).toMatchObject({control: true, buildRecord: join(cacheDir, 'builds', 'svc.control.json')})
    expect(control.published).toBeUndefined()
    expect(existsSync(join(cacheDir, 'out'))).toBe(false)
    expect(existsSync(join(cacheDir, 'builds', 'svc.json'))).toBe(false)
  })

  it('refuses an abstract recipe and an archive source with no local file before any work', async () => {
    const runs: string[] = []
    const cache = new StageCache(cacheDir)
    await expect(runBuild({ctx: context({abstract: true}), cache, stages: countingStages({}, runs)})).rejects.toThrow(InputError)
    const archive = context({kernel: {source: {kind: 'archive', file: 'old.tar.zst', sha256: 'b'.repeat(64), member: 'linux', origin: 'ask'}}})
    await expect(runBuild({ctx: archive, cache, stages: countingStages({}, runs)})).rejects.toThrow(/which cvm-image does not download/)
    expect(runs).toEqual([])
  })
})
