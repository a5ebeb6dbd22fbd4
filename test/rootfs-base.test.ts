import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {existsSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {mkdir, mkdtemp, rm} from 'node:fs/promises'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {InputError, StageError} from '../src/errors.js'
import {baseStage} from '../src/pipeline/stages/base.js'
import {mmdebstrapArgs, REPRODUCIBLE_HOOK} from '../src/distro/debian/mmdebstrap.js'
import {stageEnv, type BuildOptions, type StageIO} from '../src/pipeline/stage.js'
import {projectDirs} from '../src/recipe/load.js'
import {sha256} from '../src/util/fsx.js'
import {repoRoot} from './helpers/paths.js'
import {debian12Recipe} from './helpers/recipes.js'

/**
 * The base stage for a rootfs tarball from a URL: served by a real HTTP server on 127.0.0.1 that
 * honours Range and can cut a response short, so resuming is really exercised.
 */

let dir: string
let server: Server
let port: number
/** url path -> bytes */
const files = new Map<string, Buffer>()
/** Range headers the server saw, by path */
const ranges: Array<{path: string; range?: string}> = []
/** paths whose next full response is cut after this many bytes */
const cutAfter = new Map<string, number>()

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cvm-base-'))
  const tree = join(dir, 'tree')
  await mkdir(join(tree, 'etc'), {recursive: true})
  writeFileSync(join(tree, 'etc/os-release'), 'ID=test\n')
  // incompressible content, so the gz/xz/zst files are big enough to cut in the middle
  writeFileSync(join(tree, 'etc/noise'), randomBytes(400_000))
  execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@1700000000', '-C', tree, '-cf', join(dir, 'rootfs.tar'), '.'])
  execFileSync('gzip', ['-kn', join(dir, 'rootfs.tar')])
  execFileSync('xz', ['-k', join(dir, 'rootfs.tar')])
  execFileSync('zstd', ['-q', '-k', join(dir, 'rootfs.tar')])
  for (const f of ['rootfs.tar', 'rootfs.tar.gz', 'rootfs.tar.xz', 'rootfs.tar.zst']) files.set(`/${f}`, readFileSync(join(dir, f)))

  server = createServer((req, res) => {
    const body = files.get(req.url ?? '')
    ranges.push({path: req.url ?? '', range: req.headers.range})
    if (!body) {
      res.writeHead(404).end()
      return
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
    if (m) {
      const from = Number(m[1])
      res.writeHead(206, {'content-length': body.length - from, 'content-range': `bytes ${from}-${body.length - 1}/${body.length}`})
      res.end(body.subarray(from))
      return
    }
    const cut = cutAfter.get(req.url ?? '')
    res.writeHead(200, {'content-length': body.length})
    if (cut !== undefined) {
      cutAfter.delete(req.url ?? '')
      // give the client time to write what it got, so the cut leaves a partial file to resume
      res.write(body.subarray(0, cut), () => setTimeout(() => res.destroy(), 500))
      return
    }
    res.end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  port = (server.address() as AddressInfo).port
})

afterAll(async () => {
  server?.close()
  await rm(dir, {recursive: true, force: true})
})

function imageRecipe(format: string, pin: string | null) {
  return debian12Recipe((r) => {
    r.base = {kind: 'image', url: `http://127.0.0.1:${port}/rootfs.${format}`, sha256: pin, format}
  })
}

let runs = 0
async function runBase(format: string, pin: string | null, options: BuildOptions = {}, cacheDir?: string) {
  const root = join(dir, `run-${++runs}`)
  const ctx = {recipe: imageRecipe(format, pin), dirs: projectDirs(repoRoot), options, cacheDir: cacheDir ?? join(root, 'cache')}
  const io: StageIO<never> = {
    env: stageEnv(ctx),
    out: join(root, 'out'),
    work: join(root, 'work'),
    upstream: {},
    progress: () => undefined,
    log: () => undefined,
    logFile: join(root, 'log'),
    signal: new AbortController().signal,
  }
  await mkdir(io.out, {recursive: true})
  await mkdir(io.work, {recursive: true})
  const meta = await baseStage.run(io, await baseStage.inputs(ctx))
  return {meta, out: io.out, ctx}
}

const tarSha = () => sha256(files.get('/rootfs.tar')!)

describe('base stage from a rootfs tarball URL', () => {
  for (const format of ['tar', 'tar.gz', 'tar.xz', 'tar.zst']) {
    it(`downloads, checks and unpacks ${format}`, async () => {
      const {meta, out} = await runBase(format, sha256(files.get(`/rootfs.${format}`)!))
      expect(meta.sha256).toBe(tarSha())
      expect(readFileSync(join(out, 'rootfs.tar')).equals(files.get('/rootfs.tar')!)).toBe(true)
      expect(meta.entries).toBe(4)
    })
  }

  it('resumes a cut download with an HTTP Range request', async () => {
    const path = '/rootfs.tar.xz'
    const cache = join(dir, 'resume-cache')
    expect(files.get(path)!.length).toBeGreaterThan(100_000)
    cutAfter.set(path, 50_000)
    const pin = sha256(files.get(path)!)
    await expect(runBase('tar.xz', pin, {}, cache)).rejects.toBeInstanceOf(StageError)
    const before = ranges.length
    const {meta} = await runBase('tar.xz', pin, {}, cache)
    expect(meta.sha256).toBe(tarSha())
    const resumed = ranges.slice(before).find((r) => r.path === path)
    expect(resumed?.range).toMatch(/^bytes=(\d+)-$/)
    expect(Number(/^bytes=(\d+)-$/.exec(resumed!.range!)![1])).toBeGreaterThan(0)
  })

  it('caches by digest: a second build with the same pin does not download again', async () => {
    const path = '/rootfs.tar.gz'
    const cache = join(dir, 'digest-cache')
    const pin = sha256(files.get(path)!)
    await runBase('tar.gz', pin, {}, cache)
    const before = ranges.filter((r) => r.path === path).length
    await runBase('tar.gz', pin, {}, cache)
    expect(ranges.filter((r) => r.path === path).length).toBe(before)
  })

  it('refuses an unpinned base unless the user vouches for a sha256 or gives a file', async () => {
    const e = await runBase('tar', null).catch((err: unknown) => err)
    expect(e).toBeInstanceOf(InputError)
    expect((e as InputError).message).toMatch(/sha256 is null/)
    expect((e as InputError).hint).toMatch(/--base-sha256/)
    const vouched = await runBase('tar', null, {baseSha256: tarSha()})
    expect(vouched.meta.sha256).toBe(tarSha())
    const local = await runBase('tar', null, {baseFile: join(dir, 'rootfs.tar')})
    expect(local.meta.sha256).toBe(tarSha())
  })

  it('refuses a download whose sha256 is not the pinned one, and keeps nothing', async () => {
    const cache = join(dir, 'bad-cache')
    const e = await runBase('tar.gz', 'f'.repeat(64), {}, cache).catch((err: unknown) => err)
    expect(e).toBeInstanceOf(InputError)
    expect((e as InputError).message).toContain('not the pinned')
    expect(execFileSync('find', [cache, '-type', 'f']).toString()).toBe('')
  })

  it('refuses a --base-file that is not the pinned one, naming the flag, the pin and where it is set, and downloads nothing', async () => {
    const cache = join(dir, 'given-cache')
    const given = join(dir, 'rootfs.tar')
    const e = await runBase('tar', 'f'.repeat(64), {baseFile: given}, cache).catch((err: unknown) => err)
    expect(e).toBeInstanceOf(InputError)
    expect((e as InputError).message).toBe(`--base-file ${given}: sha256 ${tarSha()} is not the pinned ${'f'.repeat(64)} (recipe.base.sha256 (or --base-sha256), for http://127.0.0.1:${port}/rootfs.tar)`)
    // the refused copy is gone from the cache, and nothing was fetched
    const downloads = join(cache, 'downloads')
    expect(existsSync(downloads) ? readdirSync(downloads) : []).toEqual([])
  })

  it('refuses a damaged disk image base (a qcow2 magic and nothing else), saying its header is cut short', async () => {
    files.set('/rootfs.qcow2', Buffer.from('QFI\xfb', 'latin1'))
    const e = await runBase('qcow2', sha256(files.get('/rootfs.qcow2')!)).catch((err: unknown) => err)
    expect(e).toBeInstanceOf(InputError)
    expect((e as InputError).message).toMatch(/^the qcow2 base \S+: its qcow2 header is cut short; the file is too small to be a qcow2 image$/)
    expect((e as InputError).hint).toMatch(/^check that it is a qcow2 disk image and that the recipe's base.format says what it is/)
  })

  it('the cache key of an image base is its digest and its URL, which the result names (and assemble writes into build.json)', async () => {
    const run = await runBase('tar', tarSha())
    const a = await baseStage.inputs(run.ctx)
    expect(run.meta.source).toBe(run.ctx.recipe.recipe.base.kind === 'image' ? run.ctx.recipe.recipe.base.url : '')
    const other = debian12Recipe((r) => {
      r.base = {kind: 'image', url: 'http://mirror.example/x.tar', sha256: tarSha(), format: 'tar'}
    })
    const b = await baseStage.inputs({recipe: other, dirs: projectDirs(repoRoot), options: {}, cacheDir: dir})
    expect(a).toMatchObject({kind: 'image', sha256: tarSha(), file: null})
    expect(b).toEqual({...a, url: 'http://mirror.example/x.tar'})
  })
})

describe('base stage with mmdebstrap', () => {
  it('passes suite, variant, components, packages and the mode as arguments', () => {
    const r = debian12Recipe().recipe
    if (r.base.kind !== 'mmdebstrap') throw new Error('debian-12 is an mmdebstrap base')
    expect(mmdebstrapArgs(r.base, 'unshare', '/o/rootfs.tar')).toEqual([
      '--mode=unshare', '--variant=minbase', '--components=main', '--format=tar', `--include=${r.base.packages.join(',')}`, `--customize-hook=${REPRODUCIBLE_HOOK}`,
      'bookworm', '/o/rootfs.tar', 'http://deb.debian.org/debian',
    ])
  })

  it('the customize hook is an executable mmdebstrap runs directly, and its content is part of the cache key', () => {
    expect(statSync(REPRODUCIBLE_HOOK).mode & 0o111).toBe(0o111)
    expect(readFileSync(REPRODUCIBLE_HOOK, 'utf8')).toMatch(/^#!\/bin\/sh\n/)
    const inputs = baseStage.inputs({recipe: debian12Recipe(), dirs: projectDirs(repoRoot), options: {}, cacheDir: '/nonexistent'}) as unknown as {rootfs: {customizeHook: string}}
    expect(inputs.rootfs.customizeHook).toBe(sha256(readFileSync(REPRODUCIBLE_HOOK)))
  })
  // The real runs (as an unprivileged user, --mode=unshare, twice in two empty caches) are in test/assemble.test.ts, which needs their output.
})
