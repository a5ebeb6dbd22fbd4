import {existsSync, readFileSync} from 'node:fs'
import {dirname, join, relative, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

import {BugError} from '../errors.js'
import {canonicalJson, sha256} from '../util/fsx.js'

/**
 * The code a stage runs, as one digest: its own module and every module it imports, transitively,
 * from this package (relative imports; node: and npm packages are not followed). It is part of the
 * stage's cache key, so an output made by other code is never reused, and a change to a module a
 * stage does not import (another stage's, the CLI's) leaves its key alone.
 *
 * The same source gives the same digest whether the stage runs compiled (dist/*.js, the CLI) or
 * from source (src/*.ts under vitest or tsx): a compiled module is read as the TypeScript source it
 * was compiled from, which tsc keeps in its source map (tsconfig: sourceMap + inlineSources). A
 * compiled module without that source map is read as itself: a digest of other bytes, never of
 * code that is not the code that runs.
 */
export interface CodeDigest {
  digest: string
  /** each module's name (relative to src/ or dist/, as its .ts source: kernel/compile.ts) and the sha256 of its text */
  files: Record<string, string>
}

/** A module's text as the digest reads it; tests pass their own to change one module without writing it. */
export type ModuleReader = (path: string) => string

const memo = new Map<string, CodeDigest>()

/** src/ or dist/: modules are named relative to it, so a name is the same compiled or not */
const SOURCE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

/**
 * The digest of the code reached from a module, given as its import.meta.url or path; computed once
 * per process. `root` is the directory modules are named from (default: this package's src/ or
 * dist/); `read` replaces moduleText (tests change a module without writing it).
 */
export function codeDigest(module: string, opts: {root?: string; read?: ModuleReader} = {}): CodeDigest {
  const entry = module.startsWith('file:') ? fileURLToPath(module) : resolve(module)
  const root = opts.root ?? SOURCE_ROOT
  if (opts.read) return digestFrom(entry, root, opts.read)
  const id = `${root}\0${entry}`
  let d = memo.get(id)
  if (!d) {
    d = digestFrom(entry, root, moduleText)
    memo.set(id, d)
  }
  return d
}

/** The text of a module: a .ts file as it is; a compiled .js as the source its map holds, else as itself. */
export function moduleText(path: string): string {
  if (path.endsWith('.js') && existsSync(`${path}.map`)) {
    const map = JSON.parse(readFileSync(`${path}.map`, 'utf8')) as {sourcesContent?: unknown[]}
    const source = map.sourcesContent?.[0]
    if (typeof source === 'string') return source
  }
  return readFileSync(path, 'utf8')
}

function digestFrom(entry: string, root: string, read: ModuleReader): CodeDigest {
  const files: Record<string, string> = {}
  const seen = new Set<string>()
  const todo = [entry]
  while (todo.length) {
    const path = todo.pop()!
    if (seen.has(path)) continue
    seen.add(path)
    const text = read(path)
    files[relative(root, path).replace(/\.js$/, '.ts')] = sha256(text)
    for (const spec of localImports(text)) todo.push(resolveImport(path, spec))
  }
  const sorted = Object.fromEntries(Object.entries(files).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  return {digest: sha256(canonicalJson(sorted)), files: sorted}
}

// import/export ... from '<spec>' (the clause is names, braces, commas, `* as`, comments), import '<spec>', import('<spec>')
const FROM = /\b(import|export)(\s+type\b)?((?:[\w$\s{},*]|\/\/[^\n]*\n|\/\*[\s\S]*?\*\/)*?)\bfrom\s*(['"])([^'"\n]+)\4/g
const BARE = /\bimport\s*(['"])([^'"\n]+)\1/g
const DYNAMIC = /\bimport\s*\(\s*(['"])([^'"\n]+)\1\s*\)/g

/**
 * The relative specifiers a module imports at run time. A whole-statement `import type` or `export
 * type` is left out (tsc erases it); anything that might be a value import is kept: a module too
 * many only costs a rebuild, one too few would reuse an output of other code.
 */
export function localImports(text: string): string[] {
  const specs = new Set<string>()
  for (const m of text.matchAll(FROM)) {
    const typeOnly = m[2] !== undefined && !/\b(import|export)\b/.test(m[3]!)
    if (!typeOnly) specs.add(m[5]!)
  }
  for (const m of text.matchAll(BARE)) specs.add(m[2]!)
  for (const m of text.matchAll(DYNAMIC)) specs.add(m[2]!)
  return [...specs].filter((s) => s.startsWith('./') || s.startsWith('../'))
}

/** `./x.js` from a .ts module is x.ts beside it (as tsc and tsx resolve it), from a .js module x.js. */
function resolveImport(from: string, spec: string): string {
  const target = join(dirname(from), spec)
  const candidates = from.endsWith('.ts') ? [target.replace(/\.js$/, '.ts'), target] : [target]
  const found = candidates.find((c) => existsSync(c))
  if (!found) throw new BugError(`${from} imports ${spec}, which is not at ${candidates.join(' or ')}`)
  return found
}
