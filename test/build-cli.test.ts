import {execFileSync, spawn} from 'node:child_process'
import {cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {mkdtemp, rm} from 'node:fs/promises'
import {createServer, type ServerResponse, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {sha256} from '../src/util/fsx.js'
import {cli} from './helpers/cli.js'
import {repoRoot} from './helpers/paths.js'

/**
 * `cvm-image build` as a pipeline runs it (the built binary), on a test project whose recipes take
 * their base from a rootfs tarball served on 127.0.0.1: one served at once, one served so slowly that
 * the base stage is still downloading when the test sends Ctrl-C.
 */

let work: string
let project: string
let server: Server
const hanging = new Set<ServerResponse>()
let slowRequested: () => void
const slowSeen = new Promise<void>((resolve) => (slowRequested = resolve))
let slowKernelRequested: () => void
const slowKernelSeen = new Promise<void>((resolve) => (slowKernelRequested = resolve))

beforeAll(async () => {
  if (!existsSync(join(repoRoot, 'dist', 'commands', 'build.js'))) throw new Error('dist/ is not built: run scripts/test (or npx tsc -p .) first')
  work = await mkdtemp(join(tmpdir(), 'cvm-build-cli-'))
  const tree = join(work, 'tree')
  mkdirSync(join(tree, 'etc'), {recursive: true})
  writeFileSync(join(tree, 'etc/os-release'), 'ID=test\n')
  const tarball = join(work, 'rootfs.tar')
  execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@1700000000', '-C', tree, '-cf', tarball, '.'])
  const body = readFileSync(tarball)

  server = createServer((req, res) => {
    if (req.url === '/slow/rootfs.tar' || req.url === '/slow/linux.tar') {
      // a few bytes, then nothing: the download (and the base stage) runs until it is interrupted
      if (req.url === '/slow/rootfs.tar') slowRequested()
      else slowKernelRequested()
      hanging.add(res)
      res.writeHead(200, {'content-length': body.length})
      res.write(body.subarray(0, 512))
      return
    }
    if (req.url === '/rootfs.tar') return void res.writeHead(200, {'content-length': body.length}).end(body)
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port

  project = join(work, 'project')
  for (const d of ['recipes', 'kernels', 'templates']) cpSync(join(repoRoot, d), join(project, d), {recursive: true})
  const recipe = (name: string, path: string) =>
    writeFileSync(
      join(project, 'recipes', `${name}.yaml`),
      `extends: debian-12\nname: ${name}\nbase:\n  kind: image\n  url: http://127.0.0.1:${port}${path}\n  sha256: ${sha256(body)}\n  format: tar\n`,
    )
  recipe('served', '/rootfs.tar')
  recipe('slow', '/slow/rootfs.tar')
  writeFileSync(
    join(project, 'recipes', 'slowkernel.yaml'),
    `extends: debian-12\nname: slowkernel\nkernel:\n  source:\n    kind: tarball\n    url: http://127.0.0.1:${port}/slow/linux.tar\n    sha256: ${sha256(body)}\n`,
  )
})

afterAll(async () => {
  for (const res of hanging) res.destroy()
  server?.close()
  if (work) await rm(work, {recursive: true, force: true})
})

/** Starts the built binary, waits until `started` (its slow download began), sends SIGINT, and returns how it ended. */
async function interruptOnceStarted(args: string[], started: Promise<unknown>): Promise<{code: number | null; signal: NodeJS.Signals | null; stderr: string}> {
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'run.js'), ...args], {cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, CI: '1'}})
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  child.stdout.resume()
  const exited = new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve) => child.once('exit', (code, signal) => resolve({code, signal})))
  const early = await Promise.race([started.then(() => undefined), exited])
  expect(early, `${args.slice(0, 2).join(' ')} ended before its slow download started:\n${stderr}`).toBeUndefined()
  await new Promise((r) => setTimeout(r, 500)) // the first bytes are being written
  child.kill('SIGINT')
  return {...(await exited), stderr}
}

describe('cvm-image build (the built binary)', () => {
  it('Ctrl-C (SIGINT) during a stage exits 130, says it was interrupted, and leaves no cache entry', async () => {
    const cache = join(work, 'cache-interrupt')
    const {code, signal, stderr} = await interruptOnceStarted(['build', 'slow', '--root', project, '--cache-dir', cache, '--until', 'base'], slowSeen)
    expect(signal, stderr).toBeNull()
    expect(code, stderr).toBe(130)
    expect(stderr).toMatch(/cvm-image: SIGINT: stopping/)
    expect(stderr).toMatch(/stage base interrupted/)
    expect(existsSync(join(cache, 'stages', 'base')) ? readdirSync(join(cache, 'stages', 'base')) : []).toEqual([])
    expect(existsSync(join(cache, 'builds'))).toBe(false)
  })

  it('build --until keeps its record apart: the last complete build\'s record, which publish reads, is untouched', async () => {
    const cache = join(work, 'cache-until')
    mkdirSync(join(cache, 'builds'), {recursive: true})
    const complete = join(cache, 'builds', 'served.json')
    const text = JSON.stringify({recipeId: 'served', note: 'the last complete build'}, null, 2) + '\n'
    writeFileSync(complete, text)
    const r = await cli(['build', 'served', '--root', project, '--cache-dir', cache, '--until', 'base', '--json'])
    expect(r.code, r.stderr).toBe(0)
    const res = JSON.parse(r.stdout) as {buildRecord: string; stages: {stage: string; status: string}[]}
    expect(res.stages.map((s) => [s.stage, s.status])).toEqual([['base', 'ran']])
    expect(res.buildRecord).toBe(join(cache, 'builds', 'served.partial.json'))
    expect(Object.keys(JSON.parse(readFileSync(res.buildRecord, 'utf8')).stages)).toEqual(['base'])
    expect(readFileSync(complete, 'utf8')).toBe(text)
  })

  it('kernel check of a recipe takes the one abort path: Ctrl-C while its kernel source downloads exits 130 and says so', async () => {
    const cache = join(work, 'cache-kernel-check')
    const {code, signal, stderr} = await interruptOnceStarted(['kernel', 'check', 'slowkernel', '--root', project, '--cache-dir', cache], slowKernelSeen)
    expect(signal, stderr).toBeNull()
    expect(code, stderr).toBe(130)
    expect(stderr).toMatch(/cvm-image: SIGINT: stopping/)
    expect(stderr).toMatch(/stage kernel-source interrupted/)
    expect(existsSync(join(cache, 'stages', 'kernel-source')) ? readdirSync(join(cache, 'stages', 'kernel-source')) : []).toEqual([])
  })
})
