import {existsSync} from 'node:fs'
import {join} from 'node:path'

import type {BuildRecord} from './build-record.js'
import type {StageCache} from './cache.js'
import type {RemoteCaches} from './open-remote-cache.js'
import type {StageResult, StageResults} from './results.js'
import type {StageName} from './stage-names.js'
import {canonicalJson} from '../util/fsx.js'

/**
 * A build record whose entries of the named stages are all readable here: each one whose directory
 * lacks its result.json is taken from this cache (the same key), else pulled from the registries
 * (signature, digests and result.json checked as a build pulls: remote-cache.ts), and its `dir`
 * pointed there. An entry pulled must carry the result the record names. One that cannot be had is
 * left as it is, with one warning line why; the reader (publish) then says what it lacks.
 * docs/remote-cache.md "Pull only what is read".
 */
export async function completeFromRegistry(
  record: BuildRecord,
  cache: StageCache,
  remote: RemoteCaches,
  stages: readonly StageName[],
  warn: (line: string) => void,
): Promise<{record: BuildRecord; pulled: StageName[]}> {
  const out: StageResults = {...record.stages}
  const pulled: StageName[] = []
  for (const name of stages) {
    const entry = record.stages[name] as StageResult | undefined
    if (!entry || existsSync(join(entry.dir, 'result.json'))) continue
    let got = await cache.lookup(name, entry.key)
    if (!got) {
      const reasons: string[] = []
      for (const reader of remote.readers) {
        const r = await reader.pull(cache, name, entry.key)
        if ('result' in r) {
          got = r.result
          pulled.push(name)
          break
        }
        reasons.push(r.reason)
      }
      if (!got) {
        warn(`stage ${name}: ${entry.dir} is not here, and no registry gave its entry ${entry.key.slice(0, 12)}${remote.readers.length ? '' : ' (none given: --cache-from)'}${reasons.length ? `: ${reasons.join('; ')}` : ''}`)
        continue
      }
    }
    if (canonicalJson(got.meta) !== canonicalJson(entry.meta)) {
      warn(`stage ${name}: the entry ${entry.key.slice(0, 12)} in ${got.dir} has another result than the build record names: not used`)
      continue
    }
    ;(out as Record<StageName, StageResult>)[name] = got
  }
  return {record: {...record, stages: out}, pulled}
}
