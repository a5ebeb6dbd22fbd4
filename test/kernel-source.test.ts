import {createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {InputError} from '../src/errors.js'
import {downloadPinned} from '../src/util/download.js'
import {debianModule} from '../src/distro/debian/index.js'
import {fetchKernelSource} from '../src/kernel/source.js'
import {run} from '../src/util/exec.js'
import {sha256File} from '../src/util/fsx.js'

const dir = mkdtempSync(join(tmpdir(), 'kernel-source-'))
/** a kernel-shaped tarball: linux-6.1.999/Makefile with the version lines */
const tarball = join(dir, 'linux-6.1.999.tar.xz')
const ranges: string[] = []
let server: Server
let base: string

beforeAll(async () => {
  mkdirSync(join(dir, 'linux-6.1.999', 'init'), {recursive: true})
  writeFileSync(join(dir, 'linux-6.1.999', 'Makefile'), 'VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 999\nEXTRAVERSION =\n')
  // incompressible filler so the archive is big enough to interrupt halfway
  writeFileSync(join(dir, 'linux-6.1.999', 'init', 'blob'), Buffer.from(Array.from({length: 200_000}, (_, i) => (i * 7919) % 251)))
  await run('tar', ['-cJf', tarball, '-C', dir, 'linux-6.1.999'])
  // a static server on 127.0.0.1 that honours Range, as kernel.org's does
  server = createServer((req, res) => {
    const size = statSync(tarball).size
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
    if (m) {
      ranges.push(req.headers.range!)
      res.writeHead(206, {'content-length': size - Number(m[1]), 'content-range': `bytes ${m[1]}-${size - 1}/${size}`})
      createReadStream(tarball, {start: Number(m[1])}).pipe(res)
      return
    }
    res.writeHead(200, {'content-length': size})
    createReadStream(tarball).pipe(res)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(() => new Promise<void>((r) => server.close(() => r())))

describe('kernel source: upstream tarball and git', () => {
  it('resumes an interrupted download with a Range request and checks the sha256 before use', async () => {
    const sum = await sha256File(tarball)
    const dest = join(dir, 'dl', 'linux.tar.xz')
    mkdirSync(join(dir, 'dl'))
    const half = readFileSync(tarball).subarray(0, Math.floor(statSync(tarball).size / 2))
    writeFileSync(`${dest}.part`, half)
    await downloadPinned(`${base}/linux-6.1.999.tar.xz`, sum, dest)
    expect(ranges).toEqual([`bytes=${half.length}-`])
    expect(await sha256File(dest)).toBe(sum)
    expect(existsSync(`${dest}.part`)).toBe(false)
  })

  it('refuses a tarball whose sha256 differs from the pin, and keeps nothing', async () => {
    const dest = join(dir, 'dl', 'bad.tar.xz')
    const err = await downloadPinned(`${base}/linux-6.1.999.tar.xz`, '0'.repeat(64), dest).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InputError)
    expect((err as Error).message).toContain('not the pinned 0000')
    expect(existsSync(dest) || existsSync(`${dest}.part`)).toBe(false)
  })

  it('unpacks a tarball source into the tree cache by its digest', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'kernel-source-cache-'))
    const sum = await sha256File(tarball)
    const got = await fetchKernelSource({kind: 'tarball', url: `${base}/linux-6.1.999.tar.xz`, sha256: sum}, {cacheDir, work: mkdtempSync(join(tmpdir(), 'w-')), progress: () => {}}, debianModule)
    expect(got).toMatchObject({kind: 'tarball', digest: sum, tree: join(cacheDir, 'kernel-trees', sum)})
    expect(readFileSync(join(got.tree, 'Makefile'), 'utf8')).toContain('SUBLEVEL = 999')
  })

  it('fetches a git URL at a ref and caches the tree by commit id, without .git', async () => {
    const repo = join(dir, 'linux.git')
    const g = (...args: string[]) => run('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', ...args])
    mkdirSync(repo)
    await g('init', '-q')
    writeFileSync(join(repo, 'Makefile'), 'VERSION = 5\nPATCHLEVEL = 10\nSUBLEVEL = 35\n')
    await g('add', '.')
    await g('commit', '-qm', 'v5.10.35')
    await g('tag', 'v5.10.35')
    const commit = (await g('rev-parse', 'HEAD')).stdout.trim()
    const cacheDir = mkdtempSync(join(tmpdir(), 'kernel-source-cache-'))
    const got = await fetchKernelSource({kind: 'git', url: `file://${repo}`, ref: 'v5.10.35'}, {cacheDir, work: mkdtempSync(join(tmpdir(), 'w-')), progress: () => {}}, debianModule)
    expect(got).toMatchObject({kind: 'git', digest: commit})
    expect(readFileSync(join(got.tree, 'Makefile'), 'utf8')).toContain('SUBLEVEL = 35')
    expect(existsSync(join(got.tree, '.git'))).toBe(false)
  })
})
