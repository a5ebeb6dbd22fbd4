import type {z} from 'zod'

import {projectDirs, RecipeStore} from '../../src/recipe/load.js'
import {Recipe} from '../../src/recipe/schema.js'
import {canonicalJson, type Json} from '../../src/util/fsx.js'
import {repoRoot} from './paths.js'

// The fields of the recipe schema, walked from its zod definition (a field added later is walked
// too), and other valid values for each: for tests that change each field in turn.

export type Path = string[]
type Schema = z.ZodType
export interface Leaf {
  path: Path
  schema: Schema
  /** a discriminator (base.kind): it is changed by replacing the whole object it picks */
  discriminates: boolean
}

const store = new RecipeStore(projectDirs(repoRoot))
// the recipes cvm-image accepts (a recipe asking for what its family's module cannot do is refused when it loads)
export const all = store.concreteIds().flatMap((id) => {
  const r = store.tryLoad(id)
  return 'problems' in r ? [] : [r]
})

export const def = (s: Schema) => (s as unknown as {_zod: {def: Record<string, any>}})._zod.def
export const at = (v: unknown, path: Path): unknown => path.reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), v)
export const same = (a: unknown, b: unknown) => canonicalJson((a ?? null) as Json) === canonicalJson((b ?? null) as Json)

/** The schema's fields down to their values (strings, numbers, arrays, records), along the union branches this recipe takes. */
export function leaves(schema: Schema, value: unknown, path: Path = []): Leaf[] {
  const d = def(schema)
  switch (d.type) {
    case 'default':
    case 'prefault':
      return leaves(d.innerType, value, path)
    case 'optional':
    case 'nullable':
      return value === undefined || value === null ? [{path, schema, discriminates: false}] : leaves(d.innerType, value, path)
    case 'object':
      return Object.entries(d.shape as Record<string, Schema>).flatMap(([k, s]) => leaves(s, at(value, [k]), [...path, k]))
    case 'union': {
      if (!d.discriminator) return [{path, schema, discriminates: false}]
      const kind = at(value, [d.discriminator])
      const option = (d.options as Schema[]).find((o) => def(def(o).shape[d.discriminator]).values.includes(kind))
      if (!option) throw new Error(`${path.join('.')}: no option of kind ${String(kind)}`)
      return leaves(option, value, path).map((l) => (l.path.length === path.length + 1 && l.path.at(-1) === d.discriminator ? {...l, discriminates: true} : l))
    }
    default:
      return [{path, schema, discriminates: false}]
  }
}

/** Values of a field's type other than `v`, made from its schema (the recipe check then says which are valid). */
function synthesize(schema: Schema, v: unknown): unknown[] {
  const d = def(schema)
  switch (d.type) {
    case 'default':
    case 'prefault':
    case 'optional':
      return synthesize(d.innerType, v)
    case 'nullable':
      return [...(v === null ? [] : [null]), ...synthesize(d.innerType, v ?? undefined)]
    case 'string': {
      if (typeof v !== 'string') return ['x', 'x1', '0'.repeat(64), 'x.config', '1.0']
      const last = v.at(-1) ?? ''
      const other = /[0-9]/.test(last) ? String((Number(last) + 1) % 10) : last === 'a' ? 'b' : 'a'
      return [`${v}x`, `${v}1`, `x${v}`, v.slice(0, -1) + other]
    }
    case 'number':
      return typeof v === 'number' ? [v + 1, v - 1] : [1]
    case 'boolean':
      return [!v]
    case 'enum':
      return Object.values(d.entries as Record<string, string>).filter((e) => e !== v)
    case 'array': {
      const list = Array.isArray(v) ? v : []
      const element = def(d.element)
      if (element.type === 'enum') {
        const missing = Object.values(element.entries as Record<string, string>).filter((e) => !list.includes(e))
        return [...missing.map((e) => [...list, e]), list.slice(0, -1)]
      }
      return synthesize(d.element, undefined).map((e) => [...list, e])
    }
    case 'record':
      return [{...((v as object) ?? {}), CONFIG_CVM_KEY_TEST: 'y'}]
    default:
      return []
  }
}

export function withValue(recipe: Recipe, path: Path, value: unknown): Recipe | undefined {
  const copy = JSON.parse(JSON.stringify(recipe)) as Record<string, unknown>
  const parent = at(copy, path.slice(0, -1)) as Record<string, unknown>
  if (value === undefined) delete parent[path.at(-1)!]
  else parent[path.at(-1)!] = JSON.parse(JSON.stringify(value))
  const parsed = Recipe.safeParse(copy)
  return parsed.success && !same(parsed.data, recipe) ? parsed.data : undefined
}

/**
 * The recipe with the field changed, up to `max` ways: to values other recipes have there when they
 * are valid, then to values made from its type. (Several: a value can mean what the old one did, as
 * a kernel.series that names the line's default series.)
 */
export function changes(recipe: Recipe, leaf: Leaf, max = 3): {recipe: Recipe; value: unknown}[] {
  // a discriminator changes with the object it picks: another recipe's base, another kernel source
  const path = leaf.discriminates ? leaf.path.slice(0, -1) : leaf.path
  const current = at(recipe, path)
  const others = all.map((r) => at(r.recipe, path)).filter((v) => v !== undefined && !same(v, current))
  const candidates = leaf.discriminates ? others : [...others, ...synthesize(leaf.schema, current)]
  const out: {recipe: Recipe; value: unknown}[] = []
  for (const value of candidates) {
    if (out.length >= max) break
    const r = withValue(recipe, path, value)
    if (r && !out.some((o) => same(o.recipe, r))) out.push({recipe: r, value})
  }
  return out
}

