import {mkdirSync, mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {join} from 'node:path'

import tar from 'tar-stream'
import {afterAll, describe, expect, it} from 'vitest'

import {StageCache} from '../src/pipeline/cache.js'
import {runStages} from '../src/pipeline/run.js'
import type {BuildContext, Stage} from '../src/pipeline/stage.js'
import {assembleStage} from '../src/pipeline/stages/assemble.js'
import {projectDirs, type LoadedRecipe} from '../src/recipe/load.js'
import {Recipe} from '../src/recipe/schema.js'
import {canonicalJson, sha256, sha256File, type Json} from '../src/util/fsx.js'
import {repoRoot} from './helpers/paths.js'
import {changes, leaves} from './helpers/recipe-fields.js'
import {debian12Recipe} from './helpers/recipes.js'

// Issue 17 part 2, the cheap stage built for real: the assemble stage on a small base and a stand-in
// kernel, built from a recipe, then from the same recipe with every field changed that assemble's key
// does not hold (all at once), then with those it holds changed. Its output bytes must differ only
// where its key differs.

const root = mkdtempSync(join('/var/tmp', 'cvm-output-keys-'))
afterAll(() => rm(root, {recursive: true, force: true}))

/** a base rootfs.tar with an os-release and the directories the guest files go in */
async function smallBase(file: string): Promise<void> {
  const pack = tar.pack()
  const chunks: Buffer[] = []
  pack.on('data', (c) => chunks.push(c as Buffer))
  const done = new Promise<void>((r) => pack.on('end', () => r()))
  const mtime = new Date(1_700_000_000_000)
  for (const d of ['etc', 'usr', 'usr/lib', 'var', 'boot', 'lib']) pack.entry({name: `${d}/`, type: 'directory', mode: 0o755, mtime})
  pack.entry({name: 'usr/lib/os-release', mode: 0o644, mtime}, 'NAME="Small"\nID=debian\nVERSION_ID="12"\n')
  pack.entry({name: 'etc/hostname', mode: 0o644, mtime}, 'base\n')
  pack.finalize()
  await done
  writeFileSync(file, Buffer.concat(chunks))
}

/** stand-ins for the base and compile stages: fixed outputs, keyed on nothing of the recipe */
function upstreamStages(): Stage[] {
  return [
    {
      name: 'base',
      title: 'small base',
      code: import.meta.url,
      needs: [],
      inputs: () => ({small: 1}),
      async run(io) {
        await smallBase(join(io.out, 'rootfs.tar'))
        return {source: 'small', sha256: await sha256File(join(io.out, 'rootfs.tar')), entries: 8}
      },
    },
    {
      name: 'compile',
      title: 'stand-in kernel',
      code: import.meta.url,
      needs: [],
      inputs: () => ({kernel: 1}),
      async run(io) {
        // bytes the UKI carries as its .linux section; nothing boots it here
        writeFileSync(join(io.out, 'vmlinuz'), Buffer.alloc(64 * 1024, 7))
        mkdirSync(join(io.out, 'modules', 'lib', 'modules', '6.1.0-cvm'), {recursive: true})
        writeFileSync(join(io.out, 'modules', 'lib', 'modules', '6.1.0-cvm', 'modules.dep'), '')
        return {release: '6.1.0-cvm', version: '6.1.0', sourceDigest: 'x', patches: [], configDigest: 'y', vmlinuzSha256: 'z'}
      },
    },
  ]
}

/** debian-12 made small: a 1 GiB disk */
const small = (change: (r: Record<string, any>) => void = () => {}) =>
  debian12Recipe((r) => {
    r.image.size_gib = 1
    change(r)
  })

async function assemble(recipe: LoadedRecipe, name: string): Promise<{key: string; disk: string; uki: string; cmdline: string}> {
  const cacheDir = join(root, name)
  const ctx: BuildContext = {recipe, dirs: projectDirs(repoRoot), options: {}, cacheDir}
  const r = await runStages(ctx, new StageCache(cacheDir), [...upstreamStages(), assembleStage], {renderer: 'silent'})
  const a = r.results.assemble!
  return {key: a.key, disk: await sha256File(join(a.dir, 'disk.raw')), uki: a.meta.ukiSha256, cmdline: readFileSync(join(a.dir, 'cmdline.txt'), 'utf8')}
}

const loaded = (recipe: Recipe): LoadedRecipe => ({recipe, files: [], digest: sha256(canonicalJson(recipe as unknown as Json))})

const keyOf = async (recipe: Recipe) => {
  const ctx: BuildContext = {recipe: loaded(recipe), dirs: projectDirs(repoRoot), options: {}, cacheDir: root}
  return sha256(canonicalJson((await assembleStage.inputs(ctx)) as Json))
}

describe('assemble built twice: its bytes differ only where its key does', () => {
  it('every field its key does not hold changed at once: the same key and the same disk; the name it holds: a new key and a new disk', async () => {
    const base = small().recipe
    const first = await assemble(loaded(base), 'a')

    // every field of the schema (walked from zod) changed in turn, kept when assemble's key stays the same
    const keyBefore = await keyOf(base)
    let changed = base
    const unkeyed: string[] = []
    const keyed: string[] = []
    for (const leaf of leaves(Recipe, base)) {
      let kept = false
      for (const c of changes(changed, leaf)) {
        if ((await keyOf(c.recipe)) !== keyBefore) continue
        changed = c.recipe
        kept = true
        break
      }
      ;(kept ? unkeyed : keyed).push(leaf.path.join('.'))
    }
    expect(keyed).toContain('name')
    expect(unkeyed).toEqual(expect.arrayContaining(['status_note', 'image.formats', 'kernel.localversion', 'validate.memory_mib', 'publish.version']))
    const second = await assemble(loaded(changed), 'b')
    expect(second).toEqual(first)

    // the recipe's name, which build.json on the disk holds (issue 17: once not in the key)
    const renamed = await assemble(small((r) => (r.name = 'Renamed')), 'c')
    expect(renamed.key).not.toBe(first.key)
    expect(renamed.disk).not.toBe(first.disk)
  }, 600_000)
})
