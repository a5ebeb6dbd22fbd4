import {mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {startRedis, type TestRedis} from '../../test/helpers/redis.js'
import {run} from '../util/exec.js'
import {parseCcacheRemote, type CcacheRemote} from './ccache-remote.js'
import {ccacheCounters, ccacheCountsBetween, ccacheEnv, reproducibleEnv, type CcacheCounts} from './compile.js'

// The kernel build's ccache settings (ccacheEnv, reproducibleEnv) on a small C tree compiled as
// kbuild compiles (relative paths, -Wp,-MMD): real gcc, ccache 4.7 and redis-server, in seconds.
// test/kernel-build.test.ts proves the same on debian-12's kernel.
const SECRET = 'ccache-s3cret-7f3a'
const FILES = 12
const work = mkdtempSync(join(tmpdir(), 'cvm-ccache-remote-'))
let redis: TestRedis

beforeAll(async () => {
  redis = await startRedis({password: SECRET})
}, 30_000)
afterAll(async () => {
  await redis?.stop()
  await rm(work, {recursive: true, force: true})
})

/** A tree of FILES sources, each including a header (as every kernel object includes kconfig.h). */
function tree(name: string): string {
  const dir = join(work, name)
  mkdirSync(dir)
  writeFileSync(join(dir, 'k.h'), '#define K 7\n')
  for (let i = 0; i < FILES; i++) writeFileSync(join(dir, `f${i}.c`), `#include "k.h"\nint f${i}(int x) { return x * K + ${i}; }\n`)
  return dir
}

/** Compiles every source of a tree with the kernel build's ccache environment; the calls by where ccache found them, and the output. */
async function build(dir: string, ccacheDir: string, remote?: CcacheRemote, reshare?: boolean): Promise<{counts: CcacheCounts; errors: number; output: string}> {
  mkdirSync(ccacheDir, {recursive: true})
  const before = await ccacheCounters(ccacheDir)
  const env = {...reproducibleEnv(1_700_000_000), ...ccacheEnv({ccacheDir, baseDir: dir, remote, reshare})}
  let output = ''
  for (let i = 0; i < FILES; i++) {
    const r = await run('ccache', ['gcc', '-O2', '-Wp,-MMD,' + `.f${i}.o.d`, '-c', '-o', `f${i}.o`, `f${i}.c`], {cwd: dir, env, what: 'compile a test object'})
    output += r.stdout + r.stderr
  }
  const after = await ccacheCounters(ccacheDir)
  return {counts: ccacheCountsBetween(before, after), errors: (after.remote_storage_error ?? 0) - (before.remote_storage_error ?? 0), output}
}

const objects = (dir: string) => Array.from({length: FILES}, (_, i) => readFileSync(join(dir, `f${i}.o`)))

/** Every file under a directory whose bytes hold the secret. */
function holdingSecret(dir: string): string[] {
  const found: string[] = []
  for (const e of readdirSync(dir, {recursive: true, encoding: 'utf8'})) {
    const p = join(dir, e)
    if (statSync(p).isFile() && readFileSync(p).includes(SECRET)) found.push(e)
  }
  return found
}

describe('ccache remote storage (--ccache-remote) with the kernel build environment', () => {
  it('a runner with an empty local cache, in another directory, gets every object from the store another runner filled, byte for byte', async () => {
    // redis-cli's form, as a team writes it: parseCcacheRemote turns it into one ccache 4.7 authenticates with
    const remote = parseCcacheRemote(`redis://:${SECRET}@127.0.0.1:${redis.port}`)
    const first = tree('first')
    const a = await build(first, join(work, 'ccache-a'), remote)
    expect(a.counts).toEqual({local: 0, remote: 0, miss: FILES})
    expect(a.errors).toBe(0)
    expect(await redis.keys()).toBeGreaterThanOrEqual(FILES)

    const second = tree('second')
    const b = await build(second, join(work, 'ccache-b'), remote)
    expect(b.counts).toEqual({local: 0, remote: FILES, miss: 0})
    expect(objects(second)).toEqual(objects(first))
  })

  it('reshare writes local hits to the store, so a warm runner can fill an empty one', async () => {
    const empty = await startRedis({password: SECRET})
    try {
      const remote = parseCcacheRemote(`redis://${SECRET}@127.0.0.1:${empty.port}`)
      const warm = join(work, 'ccache-warm')
      await build(tree('warm'), warm)
      // without reshare a local hit writes nothing remote: the store stays empty
      expect((await build(tree('warm-2'), warm, remote)).counts).toEqual({local: FILES, remote: 0, miss: 0})
      expect(await empty.keys()).toBe(0)
      expect((await build(tree('warm-3'), warm, remote, true)).counts).toEqual({local: FILES, remote: 0, miss: 0})
      expect(await empty.keys()).toBeGreaterThanOrEqual(FILES)
      expect((await build(tree('cold'), join(work, 'ccache-cold'), remote)).counts).toEqual({local: 0, remote: FILES, miss: 0})
    } finally {
      await empty.stop()
    }
  })

  it('never writes the password: not to the output, nor to the log and debug files a ccache.conf asks for; a wrong one only compiles', async () => {
    const ccacheDir = join(work, 'ccache-logged')
    mkdirSync(ccacheDir)
    // a user's ccache.conf may log: ccache 4.7.5 writes remote_storage there, its password whole in redis-cli's :PASSWORD form
    writeFileSync(join(ccacheDir, 'ccache.conf'), `log_file = ${join(ccacheDir, 'ccache.log')}\ndebug = true\n`)
    const dir = tree('logged')
    const good = await build(dir, ccacheDir, parseCcacheRemote(`redis://:${SECRET}@127.0.0.1:${redis.port}`))
    expect(good.errors).toBe(0)
    const wrong = parseCcacheRemote(`redis://:wrong-${SECRET}@127.0.0.1:${redis.port}`)
    const bad = await build(tree('logged-wrong'), join(work, 'ccache-wrong'), wrong)
    // a store that refuses the password is skipped: every object is compiled, and counted as an error
    expect(bad.counts).toEqual({local: 0, remote: 0, miss: FILES})
    expect(bad.errors).toBe(FILES)
    expect(good.output + bad.output).not.toContain(SECRET)
    expect(holdingSecret(work)).toEqual([])
  })
})
