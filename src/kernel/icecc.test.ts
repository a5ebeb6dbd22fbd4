import {mkdirSync, mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {icecreamSkipReason, startIcecreamFarm, type IcecreamFarm} from '../../test/helpers/icecream.js'
import {run} from '../util/exec.js'
import {ccacheCounters, ccacheCountsBetween, ccacheEnv, reproducibleEnv} from './compile.js'
import {countSentTo, iceccEnvironment, joinIcecream, type IcecreamSession} from './icecc.js'

// --icecc-scheduler's compile (src/kernel/icecc.ts) against Debian's icecream, all of it real: a
// scheduler, a compile host's iceccd in a network namespace of its own (test/helpers/icecream.ts),
// and the build's own daemon, toolchain environment and ccache-in-front settings as compileKernel
// makes them. The sources are a small tree compiled as kbuild compiles (from an object directory
// inside the tree, relative paths, -Wp,-MMD, -include of a config header, -fmacro-prefix-map,
// -Werror=date-time): a whole kernel through icecream is proven by hand (docs/sharing-compiles.md).
const skip = icecreamSkipReason()
// icecream's own test switch: discovery broadcasts stay on loopback, not every interface of this machine
process.env.ICECC_TESTS = '1'
const EPOCH = 1_700_000_000
const work = mkdtempSync(join(tmpdir(), 'cvm-icecc-'))
const SOURCES = ['a/f0.c', 'a/f1.c', 'a/f2.c', 'b/g0.c', 'b/g1.c', 'b/g2.c']
const envCacheDir = join(work, 'cache')
let farm: IcecreamFarm

beforeAll(async () => {
  if (skip) return
  farm = await startIcecreamFarm()
}, 60_000)
afterAll(async () => {
  await farm?.stop()
  await rm(work, {recursive: true, force: true})
})

/** A small tree in kbuild's shape; its object directory, .build, sits inside it as compileKernel's does. */
function tree(name: string): string {
  const dir = join(work, name)
  for (const d of ['include', 'a', 'b', '.build/a', '.build/b']) mkdirSync(join(dir, d), {recursive: true})
  writeFileSync(join(dir, 'include/cfg.h'), '#define CONFIG_SCALE 7\n#define CONFIG_NAME "cvm"\n')
  writeFileSync(join(dir, 'include/util.h'), '#define SQ(x) ((x) * (x))\n#define WARN_AT() where(__FILE__, __LINE__)\nvoid where(const char *file, int line);\nstatic inline int scale(int v) { return SQ(v) * CONFIG_SCALE + __COUNTER__; }\n')
  for (const s of SOURCES) {
    const n = s.replace(/\W/g, '_')
    writeFileSync(
      join(dir, s),
      `#include "util.h"\nstatic const char *const names_${n}[] = {CONFIG_NAME, KBUILD_MODNAME, __FILE__};\n` +
        `int ${n}(int x)\n{\n\tint r = scale(x) + __COUNTER__;\n\tif (r < 0)\n\t\tWARN_AT();\n\treturn SQ(r) + (int)sizeof(names_${n}[x & 1]) + names_${n}[2][0];\n}\n`,
    )
  }
  return dir
}

/** kbuild's way of calling the compiler for one object, from the object directory. */
const kbuildArgs = (source: string, extra: string[] = []) => {
  const object = source.replace(/\.c$/, '.o')
  const base = object.split('/').pop()!
  return ['-nostdinc', '-I../include', '-include', '../include/cfg.h', '-O2', '-fno-PIE', '-fno-strict-aliasing', '-Werror=date-time', '-fmacro-prefix-map=../=',
    `-Wp,-MMD,${object.replace(base, `.${base}.d`)}`, `-DKBUILD_MODNAME="${base.replace('.o', '')}"`, ...extra, '-c', '-o', object, `../${source}`]
}

/** Compiles each source of a tree one after another (each compile finds the farm's host free), with the compiler command given. */
async function compile(dir: string, compiler: string[], env: Record<string, string>, extra: string[] = []): Promise<void> {
  for (const s of SOURCES) await run(compiler[0], [...compiler.slice(1), ...kbuildArgs(s, extra)], {cwd: join(dir, '.build'), env, what: `compile ${s}`})
}

const objects = (dir: string) => SOURCES.map((s) => readFileSync(join(dir, '.build', s.replace(/\.c$/, '.o'))))

/** What the remote host's iceccd says it compiled: the sources of its finished jobs, and their exit codes. */
function remoteJobs(log: string): {files: string[]; exitCodes: number[]} {
  return {
    files: [...log.matchAll(/remote compile for file (\S+)$/gm)].map((m) => m[1]),
    exitCodes: [...log.matchAll(/Remote compilation completed with exit code (\d+)$/gm)].map((m) => Number(m[1])),
  }
}

async function debugInfo(object: string): Promise<{compDir: string[]; producer: string[]}> {
  const {stdout} = await run('readelf', ['--debug-dump=info', object])
  return {compDir: [...stdout.matchAll(/DW_AT_comp_dir\s*:.*: (\S+)$/gm)].map((m) => m[1]), producer: [...stdout.matchAll(/DW_AT_producer\s*:.*: (.+)$/gm)].map((m) => m[1])}
}

describe.skipIf(skip)(`compiles through icecream (--icecc-scheduler): a scheduler and a compile host in a network namespace of its own${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let session: IcecreamSession

  it('makes the toolchain environment once per compiler identity (icecc-create-env), under the cache directory', async () => {
    const environment = await iceccEnvironment({cacheDir: envCacheDir})
    expect(environment.created).toBe(true)
    expect(environment.tarball.startsWith(join(envCacheDir, 'icecc-env', environment.key) + '/')).toBe(true)
    expect(environment.tarball).toMatch(/\/[0-9a-f]{32}\.tar\.gz$/)
    const listing = (await run('tar', ['-tzf', environment.tarball])).stdout.split('\n')
    for (const f of ['usr/bin/gcc', 'usr/bin/cc1', 'usr/bin/as']) expect(listing).toContain(f)
    expect(await iceccEnvironment({cacheDir: envCacheDir})).toEqual({...environment, created: false})
  }, 60_000)

  it("sends ccache's misses to the host in the other namespace, and the objects are byte for byte the ones compiled here without icecream", async () => {
    // localJobs 0: this machine lends the scheduler no compile slot (else it picks this machine or the
    // other at random whenever this one is not fully busy), so every compile goes to the other host
    session = await joinIcecream({scheduler: farm.scheduler, envCacheDir, localJobs: 0, waitMs: 30_000})
    // the scheduler knows this build's daemon by its address on the veth pair's host side
    expect(session.run).toMatchObject({scheduler: `${farm.scheduler.host}:${farm.scheduler.port}`, knownAs: farm.scheduler.host, environmentCreated: false})
    expect(session.env).toMatchObject({CCACHE_PREFIX: 'icecc', ICECC_VERSION: session.run.environment})
    const local = tree('local')
    await compile(local, ['gcc'], reproducibleEnv(EPOCH))

    const farmed = tree('farmed')
    const ccacheDir = join(work, 'ccache')
    mkdirSync(ccacheDir)
    const env = {...reproducibleEnv(EPOCH), ...ccacheEnv({ccacheDir, baseDir: farmed}), ...session.env}
    const before = await ccacheCounters(ccacheDir)
    await compile(farmed, ['ccache', 'gcc'], env)
    expect(ccacheCountsBetween(before, await ccacheCounters(ccacheDir))).toEqual({local: 0, remote: 0, miss: SOURCES.length})
    // the other host's daemon: it compiled each source, and each compile succeeded
    const jobs = remoteJobs(await farm.remote.log())
    expect([...jobs.files].sort()).toEqual(SOURCES.map((s) => `../${s}`).sort())
    expect(jobs.exitCodes).toEqual(SOURCES.map(() => 0))

    const farmedObjects = objects(farmed)
    expect(farmedObjects.map((o) => o.length)).toEqual(objects(local).map((o) => o.length))
    expect(farmedObjects).toEqual(objects(local))
    // the dependency files kbuild reads (-Wp,-MMD) are written here, naming the headers
    expect(readFileSync(join(farmed, '.build/a/.f0.o.d'), 'utf8')).toMatch(/\.\.\/include\/util\.h/)
    // a second build from the same ccache takes every object from it: nothing reaches icecream
    const again = tree('farmed-again')
    await compile(again, ['ccache', 'gcc'], {...env, CCACHE_BASEDIR: again})
    expect(remoteJobs(await farm.remote.log()).files.length).toBe(SOURCES.length)
    expect(objects(again)).toEqual(objects(local))
  }, 120_000)

  it('with debug info (-g), the remote compile records its own flags in DW_AT_producer but no path of the remote host; without the debug sections the objects are the same', async () => {
    const local = tree('local-g')
    await compile(local, ['gcc'], reproducibleEnv(EPOCH), ['-g'])
    const farmed = tree('farmed-g')
    await compile(farmed, ['icecc', 'gcc'], {...reproducibleEnv(EPOCH), ...session.env}, ['-g'])
    // the build's daemon counted what its scheduler sent where: the first test's compiles and these
    expect((await session.finish()).sentTo).toEqual({[farm.remote.address]: 2 * SOURCES.length})
    expect(remoteJobs(await farm.remote.log()).files.length).toBe(2 * SOURCES.length)

    const object = (dir: string) => join(dir, '.build/a/f0.o')
    const [l, f] = [await debugInfo(object(local)), await debugInfo(object(farmed))]
    // the compile directory is the build's own, as here: the remote's scratch directory does not show
    expect(f.compDir).toEqual([join(farmed, '.build')])
    expect(l.compDir).toEqual([join(local, '.build')])
    // icecream's remote compile adds -fdirectives-only and --param ggc-min-* (memory, not code), which GCC records
    expect(f.producer[0]).toMatch(/-fdirectives-only/)
    for (const [dir, out] of [[local, 'l.o'], [farmed, 'f.o']]) await run('objcopy', ['--strip-debug', object(dir), join(work, out)])
    expect(readFileSync(join(work, 'f.o'))).toEqual(readFileSync(join(work, 'l.o')))
  }, 60_000)

  it('compiles without icecream, the same objects, when the scheduler does not answer', async () => {
    const lost = await joinIcecream({scheduler: {host: farm.scheduler.host, port: 9}, envCacheDir, localJobs: 2, waitMs: 2000})
    expect(lost.run.knownAs).toBeUndefined()
    expect(lost.env).toEqual({})
    expect(await lost.finish()).toMatchObject({sentTo: {}})
    const dir = tree('no-scheduler')
    const ccacheDir = join(work, 'ccache-lost')
    mkdirSync(ccacheDir)
    await compile(dir, ['ccache', 'gcc'], {...reproducibleEnv(EPOCH), ...ccacheEnv({ccacheDir, baseDir: dir}), ...lost.env})
    expect(objects(dir)).toEqual(objects(join(work, 'local')))
  }, 60_000)
})

describe('countSentTo: where the scheduler sent each compile, from iceccd\'s trace', () => {
  it('counts jobs by host, leaving out those given to the daemon itself', () => {
    const log = [
      '[1] 2026-12-07 20:09:59: scheduler_use_cs 1 1 0x5568984ae770 198.18.77.2 198.18.77.1',
      '[1] 2026-12-07 20:10:00: scheduler_use_cs 2 2 0x5568984ae770 198.18.77.1 198.18.77.1',
      '[1] 2026-12-07 20:10:00: scheduler_use_cs 3 3 0x5568984ae770 10.0.0.9 198.18.77.1',
      '[1] 2026-12-07 20:10:00: scheduler_use_cs 4 4 0x5568984ae770 198.18.77.2 198.18.77.1',
      '[1] 2026-12-07 20:10:00: handle_end 2 local unix domain socket',
    ].join('\n')
    expect(countSentTo(log)).toEqual({'198.18.77.2': 2, '10.0.0.9': 1})
  })
})
