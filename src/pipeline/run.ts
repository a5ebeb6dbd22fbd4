import {createWriteStream, type WriteStream} from 'node:fs'
import {mkdir, rename, rm} from 'node:fs/promises'
import {join} from 'node:path'

import {Listr, PRESET_TIMER, type ListrRendererValue} from 'listr2'

import {InterruptedError, StageError, isCvmError} from '../errors.js'
import type {StageCache} from './cache.js'
import {openRemoteCaches, type RemoteCaches} from './open-remote-cache.js'
import type {RemoteStageCache} from './remote-cache.js'
import {planBuild, type ForceSpec, type PlannedStage} from './plan.js'
import {stageResult, type StageResults} from './results.js'
import {stageEnv, type BuildContext, type Stage, type StageIO, type StageName, type StageResult} from './stage.js'

export type RendererChoice = 'default' | 'simple' | 'silent'

/** listr2's live renderer on a TTY; a line per event when not a TTY or under CI; nothing with --json. */
export function chooseRenderer(opts: {json: boolean; isTTY: boolean; ci: boolean}): RendererChoice {
  if (opts.json) return 'silent'
  return opts.isTTY && !opts.ci ? 'default' : 'simple'
}

export interface StageOutcome {
  stage: StageName
  key: string
  /**
   * ran now, taken from the cache, pulled from a registry (--cache-from, --cache-to), or `remote-only`:
   * signed in a registry, its result read, its files left there because nothing here reads them
   * (`dir` is where they would be; `publish` pulls those it reads: docs/remote-cache.md)
   */
  status: 'ran' | 'cached' | 'remote' | 'remote-only'
  seconds: number
  dir: string
}

export interface RunStagesOptions {
  force?: ForceSpec
  renderer?: RendererChoice
  signal?: AbortSignal
  /** how long to wait for another build holding a stage's lock */
  lockTimeoutMs?: number
  /** stop after this stage */
  until?: StageName
  /** the registries to pull from and push to [default: those the build options name] */
  remote?: RemoteCaches
  /** a line a person should see that does not fail the build (a registry down, an entry refused) [default: stderr] */
  warn?: (line: string) => void
  /**
   * the stages whose files the caller reads once the stages are done (publish: STAGES_PUBLISH_READS)
   * [default: every stage]. A stage in a registry that is not among them, and that no stage running
   * here reads, is not pulled: its result is read from the registry and it is `remote-only`.
   */
  read?: readonly StageName[]
}

export interface RunStagesResult {
  results: StageResults
  outcomes: StageOutcome[]
  plan: PlannedStage[]
}

/** How often a non-TTY renderer may print a stage's progress line (a kernel build makes thousands). */
const PROGRESS_EVERY_MS = 15_000

/** A line a person should see that does not fail the command (a registry down, an entry refused), on stderr. */
export const stderrWarning = (line: string): void => void process.stderr.write(`warning: ${line}\n`)

/**
 * Runs the stages from the cache, each as soon as the stages it needs are done: the base and the
 * kernel stages need nothing of each other and run at once. A cached stage is taken as it is; any
 * other runs in a temp directory that becomes its cache entry only when it finished. On failure the
 * temp directory is kept under failed/<stage> for its logs and never becomes an entry; the stages
 * still running are stopped, those that need the failed one never start, and the first failure is
 * what the build reports.
 */
export async function runStages(ctx: BuildContext, cache: StageCache, stages: Stage[], opts: RunStagesOptions = {}): Promise<RunStagesResult> {
  await cache.sweep()
  const until = opts.until ? stages.findIndex((s) => s.name === opts.until) : -1
  const selected = until >= 0 ? stages.slice(0, until + 1) : stages
  const plan = await planBuild(ctx, cache, selected, opts.force ?? [])
  const remote = opts.remote ?? openRemoteCaches(ctx.options)
  const warn = opts.warn ?? stderrWarning
  // pushes run beside the build; a failed one is a warning, never a failed build
  const pushes: Promise<void>[] = []
  // a registry that is down or silent is asked once, not once per stage
  const down = remote.down ?? new Set<RemoteStageCache>()
  const push = (name: StageName, key: string) => {
    const to = remote.pusher
    if (!to || down.has(to)) return
    pushes.push(to.push(cache, name, key).then(
      () => undefined,
      (e: unknown) => warn(`stage ${name}: not pushed to ${to.client.repo.display}: ${(e as Error).message}`),
    ))
  }
  const results: StageResults = {}
  const outcomes: StageOutcome[] = []
  const renderer = opts.renderer ?? 'simple'
  // stops the other stages once one failed; the user's own interrupt stops them too
  const stopOthers = new AbortController()
  const signal = opts.signal ? AbortSignal.any([opts.signal, stopOthers.signal]) : stopOthers.signal
  let firstFailure: unknown
  // whether each stage finished, settled when it did (or did not): the stages that need it wait on it
  const done = new Map<StageName, {promise: Promise<boolean>; settle(ok: boolean): void}>()
  for (const p of plan) {
    let settle!: (ok: boolean) => void
    const promise = new Promise<boolean>((r) => (settle = r))
    done.set(p.name, {promise, settle})
  }
  const inPlan = new Set(plan.map((p) => p.name))
  const read = new Set<StageName>(opts.read ?? plan.map((p) => p.name))

  // Pull only what is read: each stage this cache lacks is looked up first (signature, manifest and
  // result.json, no layer). One whose files neither the caller nor a stage that runs here reads stays
  // in the registry. With --cache-to, only an entry the pushed-to registry itself holds may stay there.
  const peeked = new Map<StageName, StageResult>()
  const lookups = plan.filter((p) => !p.cached && !isForced(opts.force, p.name))
  // when every stage's files are read, every one is pulled anyway: no lookup beforehand
  if (remote.readers.length && lookups.some((p) => !read.has(p.name))) {
    await Promise.all(lookups.map(async (p) => {
      for (const reader of remote.readers) {
        if (down.has(reader)) continue
        const got = await reader.peek(p.name, p.key)
        if ('meta' in got) {
          if (!remote.pusher || reader === remote.pusher) peeked.set(p.name, {stage: p.name, key: p.key, dir: cache.entryDir(p.name, p.key), meta: got.meta} as StageResult)
          return
        }
        if ('down' in got && !down.has(reader)) {
          down.add(reader)
          warn(`stage ${p.name}: not taken from ${reader.client.repo.display}, built here, and the registry is not asked again in this build: ${got.reason}`)
        }
      }
    }))
  }
  // a stage runs here unless it is in this cache or (as far as the lookups tell) in a registry
  const runsHere = (q: PlannedStage) => isForced(opts.force, q.name) || (!q.cached && !peeked.has(q.name))
  const leftRemote = new Set(plan.filter((p) => peeked.has(p.name) && !read.has(p.name) && !plan.some((q) => q.stage.needs.includes(p.name) && runsHere(q))).map((p) => p.name))
  // A stage meant to be pulled may yet run (its pull failed): the upstream it reads is then pulled, or
  // run, after all. Once per stage, whoever asks first.
  const fetched = new Map<StageName, Promise<void>>()
  const ensureFiles = (name: StageName): Promise<void> => {
    if (!leftRemote.has(name)) return Promise.resolve()
    let f = fetched.get(name)
    if (!f) {
      f = (async () => {
        const p = plan.find((q) => q.name === name)!
        const release = await cache.lock(p.name, p.key, {waitMs: opts.lockTimeoutMs ?? 6 * 3600_000, signal})
        const started = Date.now()
        let status: StageOutcome['status'] = 'remote'
        let result: StageResult | undefined
        try {
          result = (await cache.lookup(p.name, p.key)) ?? (await pullOne(cache, p, remote.readers.filter((r) => !down.has(r)), warn, down))
          if (!result) {
            for (const n of p.stage.needs) await ensureFiles(n)
            result = await runOne(ctx, cache, p, results, {output: ''}, renderer, signal, opts.signal)
            status = 'ran'
          } else await cache.recordInputs(ctx.recipe.recipe.id, p.name, p.key, p.inputs, p.upstream, p.code.files)
        } finally {
          await release()
        }
        leftRemote.delete(name)
        keep(results, result)
        const o = outcomes.find((x) => x.stage === name)
        if (o) Object.assign(o, {status, seconds: o.seconds + (Date.now() - started) / 1000, dir: result.dir})
        push(p.name, p.key)
      })()
      fetched.set(name, f)
    }
    return f
  }

  const stage = async (p: PlannedStage, task: {title: string; output: string; skip(msg?: string): void}): Promise<boolean> => {
    const needed = p.stage.needs.filter((n) => inPlan.has(n))
    const ok = await Promise.all(needed.map((n) => done.get(n)!.promise))
    if (ok.includes(false)) {
      task.skip(`${p.stage.title}: not run (${needed.filter((_, i) => !ok[i]).join(', ')} did not finish)`)
      return false
    }
    if (signal.aborted) throw new InterruptedError(`build interrupted before stage ${p.name}`, {hint: 'the next build resumes from the last finished stage'})
    const started = Date.now()
    if (leftRemote.has(p.name)) {
      const r = peeked.get(p.name)!
      keep(results, r)
      outcomes.push({stage: p.name, key: p.key, status: 'remote-only', seconds: (Date.now() - started) / 1000, dir: r.dir})
      task.title = `${p.stage.title} [remote, not pulled: nothing here reads it; ${p.key.slice(0, 12)}]`
      return true
    }
    let result = p.cached ? await cache.lookup(p.name, p.key) : undefined
    if (result) {
      keep(results, result)
      outcomes.push({stage: p.name, key: p.key, status: 'cached', seconds: 0, dir: result.dir})
      task.title = `${p.stage.title} [cached ${p.key.slice(0, 12)}]`
      push(p.name, p.key)
      return true
    }
    const release = await cache.lock(p.name, p.key, {
      waitMs: opts.lockTimeoutMs ?? 6 * 3600_000,
      signal,
      onWait: (holder) => {
        task.output = `waiting for another build of the same inputs (${holder.trim()})`
      },
    })
    let status: StageOutcome['status'] = 'ran'
    try {
      // Another build may have finished this stage while we waited for its lock.
      const forced = isForced(opts.force, p.name)
      result = forced ? undefined : await cache.lookup(p.name, p.key)
      if (!result && !forced) {
        result = await pullOne(cache, p, remote.readers.filter((r) => !down.has(r)), warn, down)
        if (result) {
          status = 'remote'
          await cache.recordInputs(ctx.recipe.recipe.id, p.name, p.key, p.inputs, p.upstream, p.code.files)
        }
      }
      if (!result) {
        // the stages it reads that were left in the registry are pulled (or run) now
        for (const n of needed) await ensureFiles(n)
        result = await runOne(ctx, cache, p, results, task, renderer, signal, opts.signal)
      }
    } finally {
      await release()
    }
    keep(results, result)
    const seconds = (Date.now() - started) / 1000
    outcomes.push({stage: p.name, key: p.key, status, seconds, dir: result.dir})
    task.title = `${p.stage.title} [${status === 'remote' ? 'remote ' : ''}${p.key.slice(0, 12)}]`
    push(p.name, p.key)
    return true
  }

  const tasks = new Listr(
    plan.map((p) => ({
      title: p.stage.title,
      task: (_: unknown, task: {title: string; output: string; skip(msg?: string): void}) => {
        const run = stage(p, task).catch((e: unknown) => {
          // the first failure is the build's; the stages it stopped report only that they were stopped
          firstFailure ??= e
          stopOthers.abort()
          throw e
        })
        run.then(
          (ok) => done.get(p.name)!.settle(ok),
          () => done.get(p.name)!.settle(false),
        )
        return run
      },
    })),
    {
      concurrent: true,
      exitOnError: false,
      renderer: renderer as ListrRendererValue,
      rendererOptions: {timer: PRESET_TIMER, collapseSubtasks: false, outputBar: 1, persistentOutput: false},
      // listr2 has no knowledge of our stage's bookkeeping: rethrow our own errors unchanged
      registerSignalListeners: false,
    } as never,
  )
  await tasks.run()
  await Promise.all(pushes)
  if (firstFailure !== undefined) throw firstFailure
  // whatever order the stages finished in, the results and outcomes are in the stage list's order:
  // the build record, the manifest and --json are the same bytes for the same build
  const order = plan.map((p) => p.name)
  outcomes.sort((a, b) => order.indexOf(a.stage) - order.indexOf(b.stage))
  const ordered: StageResults = {}
  for (const name of order) if (results[name]) keep(ordered, results[name]!)
  return {results: ordered, outcomes, plan}
}

/** The results of the stages a stage needs; one missing is a bug in the stage list or the runner, never a run with less. */
export function upstreamFor(stage: Stage, results: StageResults): StageIO['upstream'] {
  return Object.fromEntries(stage.needs.map((n) => [n, stageResult(results, n, `stage ${stage.name}`)])) as StageIO['upstream']
}

function keep(results: StageResults, result: StageResult): void {
  ;(results as Record<StageName, StageResult>)[result.stage] = result
}

/**
 * The stage's entry from the first registry that has one signed by a trusted key; each registry that
 * has none usable is one warning line saying why (a plain absence says nothing), and the stage runs here.
 */
async function pullOne(cache: StageCache, p: PlannedStage, readers: RemoteStageCache[], warn: (line: string) => void, down: Set<RemoteStageCache>): Promise<StageResult | undefined> {
  for (const reader of readers) {
    const got = await reader.pull(cache, p.name, p.key)
    if ('result' in got) return got.result
    if ('down' in got && !down.has(reader)) {
      down.add(reader)
      warn(`stage ${p.name}: not taken from ${reader.client.repo.display}, built here, and the registry is not asked again in this build: ${got.reason}`)
    } else if (!('absent' in got) && !('down' in got)) warn(`stage ${p.name}: not taken from ${reader.client.repo.display}, built here: ${got.reason}`)
  }
  return undefined
}

function isForced(force: ForceSpec | undefined, name: StageName): boolean {
  return force === 'all' || (force ?? []).includes(name)
}

async function runOne(
  ctx: BuildContext,
  cache: StageCache,
  p: PlannedStage,
  results: StageResults,
  task: {output: string},
  renderer: RendererChoice,
  signal: AbortSignal,
  userSignal?: AbortSignal,
): Promise<StageResult> {
  const temp = await cache.makeTemp(p.name, p.key)
  const out = join(temp, 'out')
  const work = join(temp, 'work')
  await mkdir(out, {recursive: true})
  await mkdir(work, {recursive: true})
  const logFile = join(temp, 'stage.log')
  const log: WriteStream = createWriteStream(logFile, {flags: 'a'})
  let lastShown = 0
  const io: StageIO = {
    out,
    work,
    upstream: upstreamFor(p.stage, results),
    logFile,
    signal,
    env: stageEnv(ctx),
    log: (line) => {
      log.write(line + '\n')
    },
    progress: (line) => {
      const now = Date.now()
      if (renderer === 'simple' && now - lastShown < PROGRESS_EVERY_MS) return
      lastShown = now
      task.output = line
    },
  }
  try {
    // run() gets the very inputs its key was made from
    const meta = await p.stage.run(io, p.inputs)
    await new Promise<void>((r) => log.end(r))
    await rm(work, {recursive: true, force: true})
    await rename(logFile, join(out, 'stage.log'))
    const result = await cache.commit(p.name, p.key, out, meta)
    await rm(temp, {recursive: true, force: true})
    await cache.recordInputs(ctx.recipe.recipe.id, p.name, p.key, p.inputs, p.upstream, p.code.files)
    return result
  } catch (e) {
    await new Promise<void>((r) => log.end(r))
    // Keep the failed attempt's outputs and log for inspection; it never becomes a cache entry.
    const kept = join(cache.root, 'failed', p.name)
    await rm(kept, {recursive: true, force: true})
    await rm(work, {recursive: true, force: true}).catch(() => {})
    await mkdir(join(cache.root, 'failed'), {recursive: true})
    await rename(temp, kept).catch(() => rm(temp, {recursive: true, force: true}))
    if (userSignal?.aborted) throw new InterruptedError(`stage ${p.name} interrupted`, {hint: `the next build resumes from the last finished stage; its partial output was discarded`})
    if (signal.aborted) throw new InterruptedError(`stage ${p.name} stopped: another stage of the build failed`, {hint: 'the next build resumes from the last finished stage'})
    if (isCvmError(e)) {
      const withLog = e.hint ? e : Object.assign(e, {hint: `stage log: ${join(kept, 'stage.log')}`})
      throw withLog
    }
    throw new StageError(`stage ${p.name} failed: ${(e as Error).message}`, {cause: e, hint: `stage log: ${join(kept, 'stage.log')}`})
  }
}
