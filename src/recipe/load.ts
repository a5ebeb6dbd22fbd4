import {existsSync, readdirSync, readFileSync} from 'node:fs'
import {join, relative, isAbsolute} from 'node:path'

import {isMap, isScalar, isSeq, LineCounter, parseDocument, type Document} from 'yaml'
import type {z} from 'zod'

import {COMMAND_LINE_SIZE, kernelCmdlineBytes, rootArgument} from '../disk/cmdline.js'
import {capabilityProblems} from '../distro/index.js'
import {InputError} from '../errors.js'
import {canonicalJson, sha256} from '../util/fsx.js'
import {Recipe} from './schema.js'

export interface RecipeProblem {
  file: string
  line: number
  col: number
  message: string
  /** a valid recipe that asks what its distro module cannot do (src/distro/), not a malformed one */
  unsupported?: true
}

export interface LoadedRecipe {
  recipe: Recipe
  /** files from the recipe itself to its farthest ancestor */
  files: string[]
  /** sha256 of the resolved recipe as canonical JSON */
  digest: string
}

interface ParsedFile {
  id: string
  file: string
  doc: Document
  lines: LineCounter
  data: Record<string, unknown>
}

/** Where the project's data lives: recipes/, kernels/, templates/. */
export interface ProjectDirs {
  root: string
  recipes: string
  kernels: string
  templates: string
}

export function projectDirs(root: string): ProjectDirs {
  return {root, recipes: join(root, 'recipes'), kernels: join(root, 'kernels'), templates: join(root, 'templates')}
}

export function displayPath(file: string): string {
  const rel = relative(process.cwd(), file)
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file
}

export function formatProblem(p: RecipeProblem): string {
  return `${displayPath(p.file)}:${p.line}:${p.col}: ${p.message}`
}

/**
 * Reads recipes/*.yaml with source positions, resolves `extends`, and validates the result
 * against the one schema. Every problem is reported at once, each at file:line:col.
 */
export class RecipeStore {
  private readonly parsed = new Map<string, ParsedFile | RecipeProblem[]>()

  constructor(readonly dirs: ProjectDirs) {}

  ids(): string[] {
    if (!existsSync(this.dirs.recipes)) return []
    return readdirSync(this.dirs.recipes)
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => f.slice(0, -'.yaml'.length))
      .sort()
  }

  /** ids of recipes that can be built (not abstract); abstract ones are read from the file alone */
  concreteIds(): string[] {
    return this.ids().filter((id) => {
      const p = this.parse(id)
      return Array.isArray(p) || p.data.abstract !== true
    })
  }

  /** Loads and validates one recipe; throws an InputError listing every problem. */
  load(id: string): LoadedRecipe {
    const r = this.tryLoad(id)
    if ('problems' in r && r.problems.every((p) => p.unsupported)) {
      throw new InputError(`recipe ${id} asks for what cvm-image cannot build`, {
        details: r.problems.map(formatProblem),
        hint: 'change the fields above to what the family\'s module supports (`cvm-image recipes` lists what each recipe lacks), or add it to the module in src/distro/',
      })
    }
    if ('problems' in r) {
      throw new InputError(`recipe ${id} has ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}`, {
        details: r.problems.map(formatProblem),
        hint: 'fix the lines above; `cvm-image recipes show ' + id + '` prints the recipe once it is valid',
      })
    }
    return r
  }

  /** The recipe, or its problems (with the parsed recipe when only checks past the schema failed). */
  tryLoad(id: string): LoadedRecipe | {problems: RecipeProblem[]; recipe?: Recipe} {
    if (!/^[_a-z0-9][a-z0-9._-]*$/.test(id) || !this.ids().includes(id)) {
      throw new InputError(`no recipe named "${id}" in ${displayPath(this.dirs.recipes)}`, {
        hint: `known recipes: ${this.concreteIds().join(', ') || '(none)'}; \`cvm-image recipes\` lists them`,
      })
    }
    const chain: ParsedFile[] = []
    const problems: RecipeProblem[] = []
    const seen = new Set<string>()
    let cur: string | undefined = id
    while (cur !== undefined) {
      const p = this.parse(cur)
      if (Array.isArray(p)) return {problems: p}
      chain.push(p)
      seen.add(cur)
      const ext = p.data.extends
      if (ext === undefined) break
      if (typeof ext !== 'string' || !this.ids().includes(ext) || seen.has(ext)) {
        const why = typeof ext !== 'string' ? 'must be a recipe id' : seen.has(ext) ? `makes a cycle (${[...seen, ext].join(' -> ')})` : 'names no recipe in recipes/'
        problems.push(this.at(p, ['extends'], `"extends: ${String(ext)}" ${why} (name an existing recipe, e.g. one of ${this.ids().join(', ')})`))
        return {problems}
      }
      cur = ext
    }
    // Ancestors first, so the recipe's own values win.
    let merged: Record<string, unknown> = {}
    for (const p of [...chain].reverse()) merged = deepMerge(merged, p.data)
    merged.id = id
    merged.extends = chain[0].data.extends
    merged.abstract = chain[0].data.abstract ?? false

    const result = Recipe.safeParse(merged)
    if (!result.success) {
      for (const issue of result.error.issues) problems.push(...this.issueProblems(chain, issue))
      return {problems: sortProblems(problems)}
    }
    const recipe = result.data
    problems.push(...this.checkReferences(chain, recipe), ...this.checkBoot(chain, recipe))
    for (const c of capabilityProblems(recipe)) problems.push({...this.at(this.owner(chain, c.path), c.path, c.message), unsupported: true})
    if (problems.length) return {problems: sortProblems(problems), recipe}
    return {recipe, files: chain.map((c) => c.file), digest: sha256(canonicalJson(recipe))}
  }

  private parse(id: string): ParsedFile | RecipeProblem[] {
    const cached = this.parsed.get(id)
    if (cached) return cached
    const file = join(this.dirs.recipes, `${id}.yaml`)
    const text = readFileSync(file, 'utf8')
    const lines = new LineCounter()
    const doc = parseDocument(text, {lineCounter: lines, prettyErrors: false, uniqueKeys: true})
    let out: ParsedFile | RecipeProblem[]
    if (doc.errors.length) {
      out = doc.errors.map((e) => {
        const pos = lines.linePos(e.pos[0])
        return {file, line: pos.line, col: pos.col, message: `YAML syntax: ${e.message.split('\n')[0]} (fix the YAML at this position)`}
      })
    } else if (!isMap(doc.contents)) {
      out = [{file, line: 1, col: 1, message: 'a recipe must be a YAML mapping of fields (start with "name:", "status:", ...)'}]
    } else {
      const data = doc.toJS() as Record<string, unknown>
      if ('id' in data) {
        out = [this.at({id, file, doc, lines, data}, ['id'], 'unknown key "id" (remove it: a recipe\'s id is its file name)')]
      } else {
        out = {id, file, doc, lines, data}
      }
    }
    this.parsed.set(id, out)
    return out
  }

  /**
   * The position for a problem at path: a scalar value where the whole path exists (a wrong value),
   * else the key of the deepest part that exists (an unknown key, or the map that lacks a field).
   */
  private at(p: ParsedFile, path: (string | number)[], message: string, atKey = false): RecipeProblem {
    let node: unknown = p.doc.contents
    let target: unknown = node
    let complete = true
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find((it) => (it.key as {value?: unknown})?.value === seg)
        if (!pair) {
          complete = false
          break
        }
        target = pair.key
        node = pair.value
      } else if (isSeq(node) && typeof seg === 'number' && node.items[seg]) {
        target = node = node.items[seg]
      } else {
        complete = false
        break
      }
    }
    if (complete && !atKey && isScalar(node)) target = node
    const range = (target as {range?: [number, number, number]} | undefined)?.range
    const pos = range ? p.lines.linePos(range[0]) : {line: 1, col: 1}
    return {file: p.file, line: pos.line, col: pos.col, message}
  }

  /** The file of the chain that sets a value at path (nearest first), or the recipe itself. */
  private owner(chain: ParsedFile[], path: (string | number)[]): ParsedFile {
    for (let n = path.length; n > 0; n--) {
      const sub = path.slice(0, n)
      const f = chain.find((c) => c.doc.hasIn(sub))
      if (f) return f
    }
    return chain[0]
  }

  private issueProblems(chain: ParsedFile[], issue: z.core.$ZodIssue): RecipeProblem[] {
    const path = issue.path.map((k) => (typeof k === 'symbol' ? String(k) : k))
    const name = path.join('.')
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((k) => {
        const full = [...path, k]
        return this.at(this.owner(chain, full), full, `unknown key "${[...path, k].join('.')}" (remove it or fix its spelling; see the recipe format in README.md)`, true)
      })
    }
    const owner = this.owner(chain, path)
    const present = chain.some((c) => c.doc.hasIn(path))
    if (issue.code === 'invalid_type' && !present) {
      return [this.at(owner, path, `missing field "${name}" (add it: ${describeExpected(issue)})`)]
    }
    if (issue.code === 'invalid_type') {
      return [this.at(owner, path, `"${name}" must be ${describeExpected(issue)} (change its value)`)]
    }
    if (issue.code === 'invalid_value') {
      const values = (issue as {values?: unknown[]}).values ?? []
      return [this.at(owner, path, `"${name}" must be one of ${values.map((v) => JSON.stringify(v)).join(', ')} (change its value)`)]
    }
    if (issue.code === 'invalid_union') {
      const note = (issue as {note?: string}).note
      const discriminator = note === 'No matching discriminator' ? `; "${name}.kind" must name one of its kinds` : ''
      return [this.at(owner, path, `"${name}" does not match any allowed form${discriminator} (see the recipe format in README.md)`)]
    }
    if (issue.code === 'too_small' || issue.code === 'too_big') {
      return [this.at(owner, path, `"${name}": ${issue.message.replace(/^Too (small|big): /, '')} (change its value)`)]
    }
    return [this.at(owner, path, `"${name}" ${issue.message} (change its value)`)]
  }

  /** What assemble would refuse only after a kernel build: root= in boot.cmdline, a command line the kernel would cut. */
  private checkBoot(chain: ParsedFile[], r: Recipe): RecipeProblem[] {
    const path = ['boot', 'cmdline']
    const at = (message: string) => this.at(this.owner(chain, path), path, message)
    const root = rootArgument(r.boot.cmdline)
    if (root) return [at(`"boot.cmdline" sets "${root}", but assemble adds root=PARTUUID=<the root partition> (remove ${root.split('=')[0]}=)`)]
    const bytes = kernelCmdlineBytes(r.boot.cmdline)
    if (bytes > COMMAND_LINE_SIZE - 1) {
      return [at(`"boot.cmdline" gives a kernel command line of ${bytes} bytes with the root=PARTUUID=... and rw assemble adds; x86 keeps ${COMMAND_LINE_SIZE - 1} (COMMAND_LINE_SIZE ${COMMAND_LINE_SIZE} with its NUL) (shorten it by ${bytes - COMMAND_LINE_SIZE + 1} byte${bytes - COMMAND_LINE_SIZE + 1 === 1 ? '' : 's'})`)]
    }
    return []
  }

  /** Names that must exist on disk: the kernel line's series, the features, extra series files. */
  private checkReferences(chain: ParsedFile[], r: Recipe): RecipeProblem[] {
    const out: RecipeProblem[] = []
    const {kernels} = this.dirs
    const lines = existsSync(kernels) ? readdirSync(kernels).filter((d) => existsSync(join(kernels, d, 'series.yaml'))) : []
    if (!lines.includes(r.kernel.line)) {
      const path = ['kernel', 'line']
      out.push(this.at(this.owner(chain, path), path, `unknown kernel line "${r.kernel.line}": no kernels/${r.kernel.line}/series.yaml (use one of ${lines.join(', ') || '(none)'}, or add that series)`))
    }
    const featureDir = join(kernels, 'features')
    const features = existsSync(featureDir) ? readdirSync(featureDir).filter((f) => f.endsWith('.yaml')).map((f) => f.slice(0, -5)) : []
    r.kernel.config.features.forEach((f, i) => {
      if (!features.includes(f)) {
        const path = ['kernel', 'config', 'features', i]
        out.push(this.at(this.owner(chain, path), path, `unknown kernel feature "${f}" (use one of ${features.sort().join(', ') || '(none: kernels/features/ is empty)'})`))
      }
    })
    ;(r.kernel.series ?? []).forEach((s, i) => {
      if (s.includes('..') || isAbsolute(s) || !existsSync(join(kernels, s))) {
        const path = ['kernel', 'series', i]
        out.push(this.at(this.owner(chain, path), path, `series file "${s}" not found under kernels/ (give a path such as ${r.kernel.line}/series.yaml)`))
      }
    })
    return out
  }
}

function describeExpected(issue: z.core.$ZodIssue): string {
  const expected = (issue as {expected?: string}).expected
  if (!expected) return 'a value'
  const article = /^[aeiou]/.test(expected) ? 'an' : 'a'
  return `${article} ${expected}`
}

function sortProblems(ps: RecipeProblem[]): RecipeProblem[] {
  const seen = new Set<string>()
  return ps
    .filter((p) => {
      const k = formatProblem(p)
      if (seen.has(k)) return false
      seen.add(k)
      return true
    })
    .sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col)
}

/**
 * Maps merge key by key; anything else (scalars, lists) in the child replaces the parent's, and so
 * does a map of another `kind` (a tarball source replacing a Debian package's keeps none of its keys).
 */
export function deepMerge(parent: Record<string, unknown>, child: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {...parent}
  for (const [k, v] of Object.entries(child)) {
    const pv = out[k]
    const otherKind = isPlainObject(pv) && isPlainObject(v) && 'kind' in v && 'kind' in pv && v.kind !== pv.kind
    out[k] = isPlainObject(pv) && isPlainObject(v) && !otherKind ? deepMerge(pv, v) : v
  }
  return out
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v)
}

