import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {InputError} from '../errors.js'
import type {Recipe} from '../recipe/schema.js'
import {atomicWriteFile} from '../util/fsx.js'
import type {StageResults} from './results.js'

/** What a finished build made: the recipe it came from and every stage's cache entry. Publish reads this. */
export interface BuildRecord {
  recipeId: string
  recipeDigest: string
  recipe: Recipe
  toolVersion: string
  sourceDateEpoch: number
  /** when the build finished (informational; not part of any digest) */
  finishedAt: string
  stages: StageResults
}

/**
 * builds/<id>.json: the last complete build of a recipe, which `publish <id>` reads. A partial build
 * (`--until`) is kept as builds/<id>.partial.json and a control build (`--control`) as
 * builds/<id>.control.json, so neither ever replaces the last complete one.
 */
export function buildRecordPath(cacheDir: string, recipeId: string, opts: {partial?: boolean; control?: boolean} = {}): string {
  return join(cacheDir, 'builds', `${recipeId}${opts.control ? '.control' : ''}${opts.partial ? '.partial' : ''}.json`)
}

/** A control build's record: its patch stage applied only the build fixes. Such a build is never published. */
export function isControlBuild(rec: BuildRecord): boolean {
  return rec.stages.patch?.meta.control === true
}

export async function writeBuildRecord(cacheDir: string, rec: BuildRecord, opts: {partial?: boolean; control?: boolean} = {}): Promise<string> {
  const path = buildRecordPath(cacheDir, rec.recipeId, opts)
  await atomicWriteFile(path, JSON.stringify(rec, null, 2) + '\n')
  return path
}

/** Reads a build record from a path, or the last build of a recipe id in the cache. */
export async function readBuildRecord(cacheDir: string, recipeIdOrPath: string): Promise<BuildRecord> {
  const path = recipeIdOrPath.endsWith('.json') ? recipeIdOrPath : buildRecordPath(cacheDir, recipeIdOrPath)
  try {
    return JSON.parse(await readFile(path, 'utf8')) as BuildRecord
  } catch (e) {
    throw new InputError(`no build record at ${path} (${(e as Error).message})`, {
      hint: `run \`cvm-image build ${recipeIdOrPath.replace(/\.json$/, '')}\` first, or pass the path of a build record`,
    })
  }
}
