import {describe, expect, it} from 'vitest'

import {repoRoot} from '../../test/helpers/paths.js'
import {all, changes, def, leaves, same, type Path} from '../../test/helpers/recipe-fields.js'
import {projectDirs, type LoadedRecipe} from '../recipe/load.js'
import {Recipe} from '../recipe/schema.js'
import {canonicalJson, sha256, type Json} from '../util/fsx.js'
import {stageKey} from './plan.js'
import type {BuildContext, StageName} from './stage.js'
import {STAGES} from './stages/index.js'

// Issue 17 part 2. A stage's run() sees only what its inputs() returned (and its upstream results),
// so whatever of the recipe its output is made of goes through inputs(). This test holds inputs() to
// its side of that: for every field of the recipe schema (walked from the zod schema, so a field
// added later is covered without editing this test), changed in turn to another value of its type,
// each stage whose inputs() reads the field gets a new key, and no other stage does.

/** A recipe whose every read (at any depth) is recorded as a dotted path. */
function recording<T>(value: T, path: Path, reads: Set<string>): T {
  if (value === null || typeof value !== 'object') return value
  return new Proxy(value as object, {
    // listing an object's keys (a spread, JSON) reads the fields it lacks too: one added changes what was read
    ownKeys(target) {
      reads.add([...path, '*'].join('.'))
      return Reflect.ownKeys(target)
    },
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver)
      if (typeof key !== 'string') return v
      reads.add([...path, key].join('.'))
      return recording(v, [...path, key], reads)
    },
  }) as T
}

type Keys = Record<StageName, {own: string; chained: string} | {error: string}>

/**
 * Every stage's key for a recipe, as `plan` computes it (inputs(), then the key with the upstream
 * keys), without building anything: `own` with no upstream (what the stage itself keys on),
 * `chained` with its upstream stages' keys. reads: the recipe paths each stage's inputs() read.
 */
const dirs = projectDirs(repoRoot)

async function keysOf(recipe: Recipe, reads?: Map<StageName, Set<string>>): Promise<Keys> {
  const keys = {} as Keys
  for (const stage of STAGES) {
    const seen = new Set<string>()
    reads?.set(stage.name, seen)
    const loaded: LoadedRecipe = {recipe: recording(recipe, [], seen), files: [], digest: sha256(canonicalJson(recipe as unknown as Json))}
    const ctx: BuildContext = {recipe: loaded, dirs, options: {}, cacheDir: '/nonexistent'}
    try {
      // the inputs are serialized here, while reads are recorded (a stage may return a part of the recipe as it is)
      const inputs = JSON.parse(canonicalJson((await stage.inputs(ctx)) as Json)) as Json
      const upstream: Record<string, string> = {}
      for (const n of stage.needs) {
        const up = keys[n]
        if (!up || 'error' in up) throw new Error(`upstream ${n} has no key`)
        upstream[n] = up.chained
      }
      keys[stage.name] = {own: stageKey(stage, inputs, {}), chained: stageKey(stage, inputs, upstream)}
    } catch (e) {
      keys[stage.name] = {error: (e as Error).message}
    }
  }
  return keys
}

/** A read of the field, or of anything in it (an element of a list, a key of a record). */
const readsField = (reads: Set<string>, field: string) =>
  [...reads].some((r) => r === field || r.startsWith(`${field}.`) || (r.endsWith('.*') && field.startsWith(r.slice(0, -1))) || r === '*')

/** The stages downstream of these (their keys hold these keys). */
function downstream(of: StageName[]): StageName[] {
  const out = new Set(of)
  for (const s of STAGES) if (s.needs.some((n) => out.has(n))) out.add(s.name)
  return STAGES.map((s) => s.name).filter((n) => out.has(n))
}

/** Recipes enough to take every branch the recipes have: base kinds, source kinds, config bases, families. */
function covering(): LoadedRecipe[] {
  const branches = (r: Recipe) => [`base ${r.base.kind}`, `source ${r.kernel.source.kind}`, `config ${r.kernel.config.base}`, `family ${r.distro.family}`]
  const seen = new Set<string>()
  // debian-12 first: the recipe the README builds
  const ordered = [...all].sort((a, b) => Number(b.recipe.id === 'debian-12') - Number(a.recipe.id === 'debian-12'))
  return ordered.filter((l) => {
    const fresh = branches(l.recipe).filter((b) => !seen.has(b))
    for (const b of fresh) seen.add(b)
    return fresh.length > 0
  })
}

describe("a stage's key holds every recipe field its inputs() read, and no other", () => {
  it('covers every field of the schema in at least one recipe, every recipe field changed to a valid value', () => {
    const walked = new Set(covering().flatMap((l) => leaves(Recipe, l.recipe).map((f) => f.path.join('.'))))
    // the object fields of the schema, however deep; an optional object absent from every recipe would show here as missing
    const top = Object.keys(def(Recipe).shape)
    for (const k of top) expect([...walked].some((p) => p === k || p.startsWith(`${k}.`)), k).toBe(true)
    for (const l of covering()) {
      for (const leaf of leaves(Recipe, l.recipe)) expect(changes(l.recipe, leaf), `${l.recipe.id}: ${leaf.path.join('.')} has no other valid value`).not.toEqual([])
    }
  })

  for (const loaded of covering()) {
    it(`${loaded.recipe.id}: each field changed in turn, the stages that read it get new keys, the others keep theirs`, async () => {
      const reads = new Map<StageName, Set<string>>()
      const before = await keysOf(loaded.recipe, reads)
      for (const [name, k] of Object.entries(before)) expect('error' in k ? k.error : '', `${name} has no key for ${loaded.recipe.id}`).toBe('')
      const problems: string[] = []
      for (const leaf of leaves(Recipe, loaded.recipe)) {
        const field = leaf.path.join('.')
        const readers = STAGES.map((s) => s.name).filter((n) => readsField(reads.get(n)!, field))
        const tried = changes(loaded.recipe, leaf)
        if (!tried.length) problems.push(`${field}: no other valid value`)
        const keyed = new Set<StageName>()
        for (const change of tried) {
          const after = await keysOf(change.recipe)
          const shown = `${field} -> ${JSON.stringify(change.value)?.slice(0, 80)}`
          const newOwn: StageName[] = []
          const newChained: StageName[] = []
          for (const s of STAGES) {
            const [b, a] = [before[s.name], after[s.name]]
            if ('error' in b) continue
            if ('error' in a) {
              // a stage may refuse the changed field (a series file that does not exist); only a stage that reads it, or one after it
              if (!readers.includes(s.name) && !s.needs.some((n) => newChained.includes(n))) problems.push(`${shown}: ${s.name} failed, reading nothing of it: ${a.error}`)
              if (readers.includes(s.name)) newOwn.push(s.name)
              newChained.push(s.name)
              continue
            }
            if (a.own !== b.own) newOwn.push(s.name)
            if (a.chained !== b.chained) newChained.push(s.name)
          }
          for (const n of newOwn) keyed.add(n)
          const strangers = newOwn.filter((n) => !readers.includes(n))
          if (strangers.length) problems.push(`${shown}: [${strangers}] got new keys without reading it (read by [${readers}])`)
          if (!same(newChained, downstream(newOwn))) problems.push(`${shown}: new keys [${newChained}], expected those after [${newOwn}]: [${downstream(newOwn)}]`)
        }
        const unkeyed = readers.filter((n) => !keyed.has(n))
        if (tried.length && unkeyed.length) problems.push(`${field}: read by [${unkeyed}], whose keys stayed the same for ${tried.map((c) => JSON.stringify(c.value)?.slice(0, 60)).join(', ')}`)
      }
      expect(problems).toEqual([])
    }, 120_000)
  }
})
