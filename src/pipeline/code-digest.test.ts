import {mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, relative} from 'node:path'
import {fileURLToPath} from 'node:url'

import ts from 'typescript'
import {afterEach, describe, expect, it} from 'vitest'

import {projectDirs} from '../recipe/load.js'
import {repoRoot} from '../../test/helpers/paths.js'
import {debian12Recipe} from '../../test/helpers/recipes.js'
import {StageCache} from './cache.js'
import {codeDigest, localImports, moduleText} from './code-digest.js'
import {planBuild} from './plan.js'
import {STAGES} from './stages/index.js'

const srcRoot = join(dirname(fileURLToPath(import.meta.url)), '..')

let tmp: string | undefined
afterEach(() => {
  if (tmp) rmSync(tmp, {recursive: true, force: true})
  tmp = undefined
})

function tree(files: Record<string, string>): string {
  tmp = mkdtempSync(join(tmpdir(), 'cvm-code-'))
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(tmp, name)), {recursive: true})
    writeFileSync(join(tmp, name), text)
  }
  return tmp
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n)
    if (statSync(p).isDirectory()) return sourceFiles(p)
    return n.endsWith('.ts') && !n.endsWith('.test.ts') ? [p] : []
  })
}

describe("a stage's code digest", () => {
  it.each(STAGES.map((s) => [s.name, s] as const))('%s: a change to any module it runs changes its key, and its key is made with that digest', (name, stage) => {
    const code = codeDigest(stage.code)
    // the stage names its own module (a copied `code:` would key one stage on another's code)
    expect(Object.keys(code.files)).toContain(`pipeline/stages/${name}.ts`)
    for (const file of Object.keys(code.files)) {
      const changed = codeDigest(stage.code, {read: (p) => moduleText(p) + (relative(srcRoot, p) === file ? '\n// changed\n' : '')})
      expect(changed.digest, `${name} with ${file} changed`).not.toBe(code.digest)
      expect(StageCache.key(stage.name, changed.digest, {}, {})).not.toBe(StageCache.key(stage.name, code.digest, {}, {}))
    }
  })

  it('plan keys every stage with the digest of its code', async () => {
    const recipe = debian12Recipe()
    const cacheDir = (tmp = mkdtempSync(join(tmpdir(), 'cvm-code-cache-')))
    const plan = await planBuild({recipe, dirs: projectDirs(repoRoot), options: {}, cacheDir}, new StageCache(cacheDir), STAGES)
    for (const p of plan) expect(p.key, p.name).toBe(StageCache.key(p.name, codeDigest(p.stage.code).digest, p.inputs, p.upstream))
  })

  it('a module a stage does not run leaves its key alone: the kernel stages do not run the disk, rootfs, validation or CLI code', () => {
    for (const name of ['kernel-source', 'patch', 'configure', 'compile']) {
      const files = Object.keys(codeDigest(STAGES.find((s) => s.name === name)!.code).files)
      expect(files.filter((f) => /^(disk|validate|publish|cli|commands|pipeline\/stages\/(?!(kernel-source|patch|configure|compile)\.ts))/.test(f)), name).toEqual([])
    }
    const compile = Object.keys(codeDigest(STAGES.find((s) => s.name === 'compile')!.code).files)
    expect(compile).not.toContain('rootfs/transform.ts')
    expect(compile).not.toContain('kernel/series-apply.ts')
  })

  it('follows value imports (static, re-exports, side effects, dynamic), not type-only ones', () => {
    const text = [
      "import {a} from './a.js'",
      'import {',
      '  b1,',
      '  // a comment',
      '  b2,',
      "} from '../b.js'",
      "import type {T} from './t.js'",
      "import {type U, v} from './uv.js'",
      "export type {W} from './w.js'",
      "export * from './star.js'",
      "export {x as y} from './x.js'",
      "import './side.js'",
      "const m = await import('./dyn.js')",
      "import {readFileSync} from 'node:fs'",
      "import tar from 'tar-stream'",
      'export type Mode = string',
      "import {z} from './z.js'",
    ].join('\n')
    expect(localImports(text).sort()).toEqual(['../b.js', './a.js', './dyn.js', './side.js', './star.js', './uv.js', './x.js', './z.js'])
  })

  it("finds every local import tsc keeps, in every module of src/", () => {
    for (const file of sourceFiles(srcRoot)) {
      const text = readFileSync(file, 'utf8')
      const js = ts.transpileModule(text, {compilerOptions: {module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022}}).outputText
      const kept = localImports(js)
      expect(localImports(text), relative(srcRoot, file)).toEqual(expect.arrayContaining(kept))
    }
  })

  it('is the same compiled (dist/*.js with its source map) as from source (src/*.ts); a .js without its source is read as itself', () => {
    const a = "import {b} from './lib/b.js'\nimport type {T} from './t.js'\nexport const a = b\n"
    const b = "import {c} from './c.js'\nexport const b = c + 1\n"
    const c = 'export const c = 1\n'
    const map = (source: string) => JSON.stringify({version: 3, sources: ['x.ts'], sourcesContent: [source], mappings: ''})
    const root = tree({
      'src/a.ts': a,
      'src/lib/b.ts': b,
      'src/lib/c.ts': c,
      'src/t.ts': 'export type T = number\n',
      'src/unrelated.ts': 'export const u = 0\n',
      'dist/a.js': "import {b} from './lib/b.js'\nexport const a = b\n",
      'dist/a.js.map': map(a),
      'dist/lib/b.js': "import {c} from './c.js'\nexport const b = c + 1\n",
      'dist/lib/b.js.map': map(b),
      'dist/lib/c.js': 'export const c = 1;\n',
      'dist/lib/c.js.map': map(c),
    })
    const fromSrc = codeDigest(join(root, 'src/a.ts'), {root: join(root, 'src')})
    expect(Object.keys(fromSrc.files)).toEqual(['a.ts', 'lib/b.ts', 'lib/c.ts'])
    const fromDist = codeDigest(join(root, 'dist/a.js'), {root: join(root, 'dist')})
    expect(fromDist).toEqual(fromSrc)

    // an unrelated module or a type-only one: same digest; a module reached through another: a new one
    writeFileSync(join(root, 'src/unrelated.ts'), 'export const u = 1\n')
    writeFileSync(join(root, 'src/t.ts'), 'export type T = string\n')
    expect(codeDigest(join(root, 'src/a.ts'), {root: join(root, 'src'), read: moduleText}).digest).toBe(fromSrc.digest)
    writeFileSync(join(root, 'src/lib/c.ts'), 'export const c = 2\n')
    expect(codeDigest(join(root, 'src/a.ts'), {root: join(root, 'src'), read: moduleText}).digest).not.toBe(fromSrc.digest)

    // compiled without inlineSources: the .js itself is the text, so another digest, never a stale one
    writeFileSync(join(root, 'dist/lib/c.js.map'), JSON.stringify({version: 3, sources: ['c.ts'], mappings: ''}))
    const noSource = codeDigest(join(root, 'dist/a.js'), {root: join(root, 'dist'), read: moduleText})
    expect(noSource.files['lib/c.ts']).not.toBe(fromSrc.files['lib/c.ts'])
    writeFileSync(join(root, 'dist/lib/c.js'), 'export const c = 3\n')
    expect(codeDigest(join(root, 'dist/a.js'), {root: join(root, 'dist'), read: moduleText}).digest).not.toBe(noSource.digest)
  })
})
