import {randomBytes} from 'node:crypto'
import {existsSync} from 'node:fs'
import {chmod, mkdir, open, readFile, readdir, rename, rm, stat, unlink} from 'node:fs/promises'
import {hostname} from 'node:os'
import {join} from 'node:path'

import {StageError} from '../errors.js'
import {atomicWriteFile, canonicalJson, sha256, type Json} from '../util/fsx.js'
import type {CodeDigest} from './code-digest.js'
import type {StageName, StageResult} from './stage.js'

/**
 * A content-addressed store of stage outputs: stages/<stage>/<key>/ holds one finished output.
 * An entry appears only by rename of a complete temp directory, so an interrupted stage
 * (Ctrl-C or SIGKILL) leaves no entry; its temp directory is swept by the next build.
 */
export class StageCache {
  constructor(readonly root: string) {}

  /** A stage's key: its name, the digest of its code (code-digest.ts), its inputs and the keys of the stages it needs. */
  static key(stage: StageName, code: string, inputs: Json, upstream: Record<string, string>): string {
    return sha256(canonicalJson({stage, code, inputs, upstream}))
  }

  entryDir(stage: StageName, key: string): string {
    return join(this.root, 'stages', stage, key)
  }

  async lookup(stage: StageName, key: string): Promise<StageResult | undefined> {
    const dir = this.entryDir(stage, key)
    try {
      // result.json is what this stage's run() returned: its type is the stage's result type
      const meta = JSON.parse(await readFile(join(dir, 'result.json'), 'utf8')) as StageResult['meta']
      return {stage, key, dir, meta} as StageResult
    } catch {
      return undefined
    }
  }

  /**
   * A fresh temp directory named after its owner, to be committed or discarded. It is 0700 whatever
   * the umask: a stage run as root unpacks setuid files with their real owners in it, and a cache
   * other users can traverse must not expose them.
   */
  async makeTemp(stage: StageName, key: string): Promise<string> {
    await mkdir(join(this.root, 'tmp'), {recursive: true})
    const dir = join(this.root, 'tmp', `${stage}-${key.slice(0, 16)}.${process.pid}.${randomBytes(4).toString('hex')}`)
    await mkdir(dir, {mode: 0o700})
    await chmod(dir, 0o700)
    return dir
  }

  /** Moves a finished temp directory into place: result.json is written last, then one rename. */
  async commit(stage: StageName, key: string, temp: string, meta: unknown): Promise<StageResult> {
    await atomicWriteFile(join(temp, 'result.json'), JSON.stringify(meta, null, 2) + '\n')
    const dir = this.entryDir(stage, key)
    await mkdir(join(this.root, 'stages', stage), {recursive: true})
    // --force on a stage: the old entry is moved aside first, then removed, so the slot is never half-written.
    if (existsSync(dir)) {
      const old = join(this.root, 'tmp', `old-${stage}-${key.slice(0, 16)}.${process.pid}.${randomBytes(4).toString('hex')}`)
      await rename(dir, old)
      await rm(old, {recursive: true, force: true})
    }
    await rename(temp, dir)
    return {stage, key, dir, meta} as StageResult
  }

  /** Removes temp directories whose process is gone (left by a killed build). */
  async sweep(): Promise<string[]> {
    const tmp = join(this.root, 'tmp')
    if (!existsSync(tmp)) return []
    const removed: string[] = []
    for (const name of await readdir(tmp)) {
      const pid = Number(name.split('.').at(-2))
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) continue
      if (pid === process.pid) continue
      await rm(join(tmp, name), {recursive: true, force: true})
      removed.push(name)
    }
    return removed
  }

  /** Remembers the inputs a recipe's stage was last built from, so `plan` can say what changed. */
  async recordInputs(recipeId: string, stage: StageName, key: string, inputs: Json, upstream: Record<string, string>, code: CodeDigest['files']): Promise<void> {
    await atomicWriteFile(join(this.root, 'recipes', recipeId, `${stage}.json`), JSON.stringify({key, inputs, upstream, code}, null, 2) + '\n')
  }

  /** What recordInputs() kept; `code` is absent in a record written before code digests were keyed. */
  async lastInputs(recipeId: string, stage: StageName): Promise<{key: string; inputs: Json; upstream: Record<string, string>; code?: CodeDigest['files']} | undefined> {
    try {
      return JSON.parse(await readFile(join(this.root, 'recipes', recipeId, `${stage}.json`), 'utf8'))
    } catch {
      return undefined
    }
  }

  /**
   * Takes the lock for one stage key. Another live build holding it: wait up to waitMs, then fail
   * naming it. A lock whose process is gone is taken over.
   */
  async lock(stage: StageName, key: string, opts: {waitMs: number; onWait?: (holder: string) => void; signal?: AbortSignal}): Promise<() => Promise<void>> {
    const dir = join(this.root, 'locks')
    await mkdir(dir, {recursive: true})
    const path = join(dir, `${stage}-${key}.lock`)
    const me = `${process.pid} ${hostname()} ${new Date().toISOString()}`
    const deadline = Date.now() + opts.waitMs
    let told = false
    for (;;) {
      try {
        const fh = await open(path, 'wx')
        await fh.writeFile(me)
        await fh.close()
        return async () => {
          await unlink(path).catch(() => {})
        }
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
      }
      const holder = await readFile(path, 'utf8').catch(() => '')
      const [pidText, host] = holder.split(' ')
      const pid = Number(pidText)
      const stale = holder !== '' && host === hostname() && !(Number.isInteger(pid) && isAlive(pid))
      if (stale || (holder === '' && (await ageMs(path)) > 10_000)) {
        await unlink(path).catch(() => {})
        continue
      }
      if (!told) {
        opts.onWait?.(holder)
        told = true
      }
      if (Date.now() > deadline || opts.signal?.aborted) {
        throw new StageError(`stage ${stage} is locked by another build (pid ${pidText} on ${host ?? '?'}) with the same inputs`, {
          hint: `wait for it to finish, or raise --lock-timeout; a lock left by a dead process is taken over automatically (${path})`,
        })
      }
      await new Promise((r) => setTimeout(r, 500))
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function ageMs(path: string): Promise<number> {
  try {
    return Date.now() - (await stat(path)).mtimeMs
  } catch {
    return 0
  }
}
