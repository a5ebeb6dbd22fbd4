import {existsSync} from 'node:fs'
import {join} from 'node:path'

import {BugError} from '../errors.js'
import type {Json} from '../util/fsx.js'
import {StageCache} from './cache.js'
import {codeDigest, type CodeDigest} from './code-digest.js'
import type {RemoteCaches} from './open-remote-cache.js'
import type {ForceSpec} from './options.js'
import type {StageResult, StageResults} from './results.js'
import type {BuildContext, Stage, StageName} from './stage.js'

export interface PlannedStage {
  stage: Stage
  name: StageName
  key: string
  inputs: Json
  upstream: Record<string, string>
  /** the code the stage runs: each module's sha256 (their digest is in the key) */
  code: CodeDigest
  cached: boolean
  /** a registry (--cache-from, --cache-to) holds it signed by a trusted key: it will be pulled, not run */
  remote?: string
  /** why it will run, or "cached", or where it will be pulled from */
  reason: string
}

/** --force, as the options table parses it */
export type {ForceSpec} from './options.js'

/** A stage's cache key from its inputs and its upstream keys: the digest of its code goes in with them. */
export function stageKey(stage: Stage, inputs: Json, upstream: Record<string, string>): string {
  return StageCache.key(stage.name, codeDigest(stage.code).digest, inputs, upstream)
}

/**
 * Computes every stage's cache key from its declared inputs and its upstream keys, and says
 * whether it is cached and, if not, why it will run. Reads only: creates, locks and changes nothing.
 */
export async function planBuild(ctx: BuildContext, cache: StageCache, stages: Stage[], force: ForceSpec = [], remote?: RemoteCaches): Promise<PlannedStage[]> {
  const planned: PlannedStage[] = []
  const byName = new Map<StageName, PlannedStage>()
  for (const stage of stages) {
    // a stage's inputs are JSON by contract: they are hashed into its key and recorded for `plan`
    const inputs = (await stage.inputs(ctx)) as Json
    const upstream: Record<string, string> = {}
    for (const n of stage.needs) {
      const up = byName.get(n)
      if (!up) throw new BugError(`stage ${stage.name} needs ${n}, which is not before it`)
      upstream[n] = up.key
    }
    const code = codeDigest(stage.code)
    const key = stageKey(stage, inputs, upstream)
    const present = existsSync(join(cache.entryDir(stage.name, key), 'result.json'))
    const forced = force === 'all' || force.includes(stage.name)
    let reason = 'cached'
    if (forced) reason = 'forced by --force'
    else if (!present) reason = await whyNotCached(cache, ctx.recipe.recipe.id, stage, inputs, upstream, code, byName)
    let from: string | undefined
    // a registry is asked only with --cache-from or --cache-to, and only about what is not here
    if (!present && !forced) {
      for (const reader of remote?.readers ?? []) {
        const r = await reader.probe(stage.name, key)
        if (r.ok) {
          from = reader.client.repo.display
          reason = `remote: in ${from}, signed by a trusted key`
          break
        }
        if (!('absent' in r)) reason += `; not taken from ${reader.client.repo.display}: ${r.reason}`
      }
    }
    const p: PlannedStage = {stage, name: stage.name, key, inputs, upstream, code, cached: present && !forced, remote: from, reason}
    planned.push(p)
    byName.set(stage.name, p)
  }
  return planned
}

async function whyNotCached(cache: StageCache, recipeId: string, stage: Stage, inputs: Json, upstream: Record<string, string>, code: CodeDigest, byName: Map<StageName, PlannedStage>): Promise<string> {
  const last = await cache.lastInputs(recipeId, stage.name)
  if (!last) return 'never built for this recipe'
  const changed = diffPaths(last.inputs, inputs)
  const lastUp = last.upstream ?? {}
  const upChanged = Object.keys(upstream).filter((n) => lastUp[n] !== undefined && lastUp[n] !== upstream[n])
  const parts: string[] = []
  if (changed.length) parts.push(`inputs changed: ${changed.slice(0, 6).join(', ')}${changed.length > 6 ? `, +${changed.length - 6} more` : ''}`)
  if (upChanged.length) parts.push(`upstream changed: ${upChanged.join(', ')}`)
  const codeChanged = last.code ? diffPaths(last.code, code.files) : []
  if (codeChanged.length) parts.push(`code changed: ${codeChanged.slice(0, 4).join(', ')}${codeChanged.length > 4 ? `, +${codeChanged.length - 4} more` : ''}`)
  const upRunning = stage.needs.filter((n) => !byName.get(n)?.cached && !byName.get(n)?.remote)
  if (!parts.length && upRunning.length) parts.push(`upstream will run: ${upRunning.join(', ')}`)
  if (!parts.length) parts.push(last.key === undefined ? 'no cache entry' : 'cache entry missing (removed or interrupted)')
  return parts.join('; ')
}

/** Dotted paths whose values differ between two JSON values. */
export function diffPaths(a: unknown, b: unknown, prefix = ''): string[] {
  const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v)
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()
    return keys.flatMap((k) => diffPaths(a[k], b[k], prefix ? `${prefix}.${k}` : k))
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix || '(all)']
}

/**
 * The stages' results as the cache holds them, running nothing: the cache-only form of runStages for
 * readers (`cvm-image report`). A stage not in the cache is an answer (`missing`), never a download
 * or a run; no lock is taken and nothing is written. With `sameInputs`, a stage whose key is not in
 * the cache because only code changed is taken from the entry it was last built into for this
 * recipe (recipes/<id>/<stage>.json) when its inputs are the same and its upstream entries are the
 * ones taken here; such stages are named in `otherCode`.
 */
export async function cachedStages(ctx: BuildContext, cache: StageCache, stages: Stage[], opts: {sameInputs?: boolean} = {}): Promise<{results: StageResults; missing: StageName[]; otherCode: StageName[]}> {
  const results: StageResults = {}
  const missing: StageName[] = []
  const otherCode: StageName[] = []
  for (const p of await planBuild(ctx, cache, stages)) {
    let r = p.cached ? await cache.lookup(p.name, p.key) : undefined
    if (!r && opts.sameInputs) {
      const last = await cache.lastInputs(ctx.recipe.recipe.id, p.name)
      const sameUpstream = p.stage.needs.every((n) => results[n] !== undefined && last?.upstream?.[n] === results[n]!.key)
      if (last && sameUpstream && diffPaths(last.inputs, p.inputs).length === 0) {
        r = await cache.lookup(p.name, last.key)
        if (r) otherCode.push(p.name)
      }
    }
    if (r) (results as Record<StageName, StageResult>)[p.name] = r
    else missing.push(p.name)
  }
  return {results, missing, otherCode}
}
