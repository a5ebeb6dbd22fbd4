import {spawn} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {countingStages, testContext} from '../../test/fixtures/counting-stages.js'
import {repoRoot} from '../../test/helpers/paths.js'
import {StageCache} from './cache.js'
import {planBuild} from './plan.js'
import {runStages} from './run.js'

let cacheDir: string
beforeEach(() => {
  cacheDir = mkdtempSync(join(tmpdir(), 'cvm-cache-'))
})
afterEach(() => rmSync(cacheDir, {recursive: true, force: true}))

const entries = (stage: string) => (existsSync(join(cacheDir, 'stages', stage)) ? readdirSync(join(cacheDir, 'stages', stage)) : [])

describe('stage runner and cache', () => {
  it('runs every stage once, then nothing on a second run with the same inputs', async () => {
    const runs: string[] = []
    const inputs = {base: 'bookworm', 'kernel-source': '6.1', patch: 'series-1', assemble: 'cmdline-1'}
    const first = await runStages(testContext(cacheDir), new StageCache(cacheDir), countingStages(inputs, runs), {renderer: 'silent'})
    // base and kernel-source need nothing: they run at once, either may start first
    expect([...runs].sort()).toEqual(['assemble', 'base', 'kernel-source', 'patch'])
    expect(runs.indexOf('patch')).toBeGreaterThan(runs.indexOf('kernel-source'))
    expect(runs.at(-1)).toBe('assemble')
    expect(readFileSync(join(first.results.assemble!.dir, 'out.txt'), 'utf8')).toBe('assemble:cmdline-1|base:bookworm|patch:series-1|kernel-source:6.1')
    expect(existsSync(join(first.results.patch!.dir, 'stage.log'))).toBe(true)

    runs.length = 0
    const second = await runStages(testContext(cacheDir), new StageCache(cacheDir), countingStages(inputs, runs), {renderer: 'silent'})
    expect(runs).toEqual([])
    expect(second.outcomes.map((o) => o.status)).toEqual(['cached', 'cached', 'cached', 'cached'])
    expect(second.results.assemble!.key).toBe(first.results.assemble!.key)
  })

  it('reruns exactly the stages that depend on a changed input, and plan says why', async () => {
    const runs: string[] = []
    const inputs = {base: 'bookworm', 'kernel-source': '6.1', patch: 'series-1', assemble: 'cmdline-1'}
    await runStages(testContext(cacheDir), new StageCache(cacheDir), countingStages(inputs, runs), {renderer: 'silent'})

    const changed = {...inputs, patch: 'series-2'}
    const plan = await planBuild(testContext(cacheDir), new StageCache(cacheDir), countingStages(changed, []))
    expect(plan.map((p) => [p.name, p.cached, p.reason])).toEqual([
      ['base', true, 'cached'],
      ['kernel-source', true, 'cached'],
      ['patch', false, 'inputs changed: value'],
      ['assemble', false, 'upstream changed: patch'],
    ])

    runs.length = 0
    await runStages(testContext(cacheDir), new StageCache(cacheDir), countingStages(changed, runs), {renderer: 'silent'})
    expect(runs).toEqual(['patch', 'assemble'])

    // A change that only the last stage reads reruns only that stage.
    runs.length = 0
    await runStages(testContext(cacheDir), new StageCache(cacheDir), countingStages({...changed, assemble: 'cmdline-2'}, runs), {renderer: 'silent'})
    expect(runs).toEqual(['assemble'])
    // Both versions stay in the cache, so going back costs nothing.
    runs.length = 0
    await runStages(testContext(cacheDir), new StageCache(cacheDir), countingStages(inputs, runs), {renderer: 'silent'})
    expect(runs).toEqual([])
  })

  it('a stage whose code changed runs again, and plan names the modules that changed', async () => {
    const code = join(cacheDir, 'code')
    mkdirSync(code)
    writeFileSync(join(code, 'lib.ts'), 'export const v = 1\n')
    writeFileSync(join(code, 'stage-v1.ts'), "import {v} from './lib.js'\n")
    writeFileSync(join(code, 'stage-v2.ts'), "import {v} from './lib.js'\nexport const w = v\n")
    const runs: string[] = []
    const withCode = (file: string) => countingStages({}, runs).map((s) => (s.name === 'patch' ? {...s, code: join(code, file)} : s))
    await runStages(testContext(cacheDir), new StageCache(cacheDir), withCode('stage-v1.ts'), {renderer: 'silent'})
    const plan = await planBuild(testContext(cacheDir), new StageCache(cacheDir), withCode('stage-v2.ts'))
    const patch = plan.find((p) => p.name === 'patch')!
    expect(patch.cached).toBe(false)
    expect(patch.reason).toMatch(/^code changed: \S*stage-v1\.ts, \S*stage-v2\.ts$/)
    expect(plan.find((p) => p.name === 'assemble')!.reason).toBe('upstream changed: patch')
    runs.length = 0
    await runStages(testContext(cacheDir), new StageCache(cacheDir), withCode('stage-v2.ts'), {renderer: 'silent'})
    expect(runs).toEqual(['patch', 'assemble'])
  })

  it('--force reruns the forced stage even when cached', async () => {
    const runs: string[] = []
    await runStages(testContext(cacheDir), new StageCache(cacheDir), countingStages({}, runs), {renderer: 'silent'})
    runs.length = 0
    await runStages(testContext(cacheDir), new StageCache(cacheDir), countingStages({}, runs), {renderer: 'silent', force: ['kernel-source']})
    expect(runs).toEqual(['kernel-source'])
    expect(entries('kernel-source')).toHaveLength(1)
  })

  it('an aborted stage (Ctrl-C) leaves no cache entry and the next run resumes after the last finished stage', async () => {
    const runs: string[] = []
    const abort = new AbortController()
    const stages = countingStages({}, runs, {hang: 'patch', onHang: () => abort.abort()})
    await expect(runStages(testContext(cacheDir), new StageCache(cacheDir), stages, {renderer: 'silent', signal: abort.signal})).rejects.toThrow(/interrupted/)
    expect(entries('patch')).toEqual([])
    expect(readdirSync(join(cacheDir, 'tmp'))).toEqual([])
    // the failed attempt's log is kept for inspection, outside the cache entries
    expect(readFileSync(join(cacheDir, 'failed', 'patch', 'stage.log'), 'utf8')).toContain('wrote patch:')

    runs.length = 0
    await runStages(testContext(cacheDir), new StageCache(cacheDir), countingStages({}, runs), {renderer: 'silent'})
    expect(runs).toEqual(['patch', 'assemble'])
  })

  it('a build killed with SIGKILL mid-stage leaves no entry; the next build sweeps its temp and resumes', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'test/fixtures/interrupt-build.ts'), cacheDir], {cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit']})
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('READY') && resolve())
      child.on('exit', (code) => reject(new Error(`child exited early with ${code}`)))
    })
    child.kill('SIGKILL')
    await new Promise((r) => child.once('exit', r))
    expect(entries('kernel-source')).toHaveLength(1) // finished before the kill
    expect(entries('patch')).toEqual([])
    expect(readdirSync(join(cacheDir, 'tmp')).some((n) => n.startsWith('patch-'))).toBe(true)
    expect(readdirSync(join(cacheDir, 'locks')).some((n) => n.startsWith('patch-'))).toBe(true)

    const runs: string[] = []
    await runStages(testContext(cacheDir), new StageCache(cacheDir), countingStages({}, runs), {renderer: 'silent'})
    expect(runs).toEqual(['patch', 'assemble']) // the dead build's lock was taken over
    expect(readdirSync(join(cacheDir, 'tmp'))).toEqual([])
  })

  it('two builds of the same inputs at once: one runs the stage, the other waits and takes its result', async () => {
    const runsA: string[] = []
    const runsB: string[] = []
    const [a, b] = await Promise.all([
      runStages(testContext(cacheDir), new StageCache(cacheDir), countingStages({}, runsA), {renderer: 'silent'}),
      runStages(testContext(cacheDir), new StageCache(cacheDir), countingStages({}, runsB), {renderer: 'silent'}),
    ])
    expect([...runsA, ...runsB].sort()).toEqual(['assemble', 'base', 'kernel-source', 'patch'])
    expect(a.results.assemble!.dir).toBe(b.results.assemble!.dir)
  })

  it('a stage runs in a temp dir only its owner can enter (0700), whatever the umask', async () => {
    const seen: number[] = []
    const stage = {...countingStages({}, [])[0], run: async (io: {out: string}) => (seen.push(statSync(dirname(io.out)).mode & 0o777), {})}
    const old = process.umask(0)
    try {
      await runStages(testContext(cacheDir), new StageCache(cacheDir), [stage], {renderer: 'silent'})
      expect(statSync(await new StageCache(cacheDir).makeTemp('base', 'k'.repeat(64))).mode & 0o777).toBe(0o700)
    } finally {
      process.umask(old)
    }
    expect(seen).toEqual([0o700])
  })

  it('a lock held by a live process past the timeout fails naming the holder', async () => {
    const cache = new StageCache(cacheDir)
    const key = 'k'.repeat(64)
    const release = await cache.lock('base', key, {waitMs: 0})
    await expect(cache.lock('base', key, {waitMs: 600})).rejects.toThrow(`stage base is locked by another build (pid ${process.pid}`)
    await release()
    const again = await cache.lock('base', key, {waitMs: 0})
    await again()
  })

  it('stages that need nothing of each other run at once: base waits for kernel-source to start, which a runner going one stage at a time never does', async () => {
    const runs: string[] = []
    const stages = countingStages({}, runs)
    let sourceStarted!: () => void
    const started = new Promise<void>((r) => (sourceStarted = r))
    const base = stages.find((s) => s.name === 'base')!
    const source = stages.find((s) => s.name === 'kernel-source')!
    const baseRun = base.run.bind(base)
    const sourceRun = source.run.bind(source)
    base.run = async (io, inputs) => {
      await Promise.race([started, new Promise((_, reject) => setTimeout(() => reject(new Error('kernel-source did not start while base ran')), 10_000))])
      return baseRun(io, inputs)
    }
    source.run = async (io, inputs) => {
      sourceStarted()
      return sourceRun(io, inputs)
    }
    const r = await runStages(testContext(cacheDir), new StageCache(cacheDir), stages, {renderer: 'silent'})
    // outcomes come in the stage list's order, whatever order the stages finished in
    expect(r.outcomes.map((o) => o.stage)).toEqual(['base', 'kernel-source', 'patch', 'assemble'])
    expect(Object.keys(r.results)).toEqual(['base', 'kernel-source', 'patch', 'assemble'])
    expect(runs.indexOf('assemble')).toBe(3)
  })

  it('a failed stage stops the stages still running, the stages that need it never start, and its error is the one reported', async () => {
    const runs: string[] = []
    const stages = countingStages({}, runs, {hang: 'base'})
    const source = stages.find((s) => s.name === 'kernel-source')!
    source.run = async () => {
      runs.push('kernel-source')
      // base is under way (it hangs until stopped)
      while (!runs.includes('base')) await new Promise((r) => setTimeout(r, 10))
      throw new Error('the source is broken')
    }
    const err = await runStages(testContext(cacheDir), new StageCache(cacheDir), stages, {renderer: 'silent'}).catch((e: Error) => e)
    expect(err).toBeInstanceOf(Error)
    expect((err as Error).message).toMatch(/stage kernel-source failed: the source is broken/)
    expect(runs.sort()).toEqual(['base', 'kernel-source'])
    // neither the stopped base nor anything after the failure became a cache entry
    for (const stage of ['base', 'kernel-source', 'patch', 'assemble']) expect(entries(stage)).toEqual([])
    expect(readdirSync(join(cacheDir, 'failed')).sort()).toEqual(['base', 'kernel-source'])
  })
})
