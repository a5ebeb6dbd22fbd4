import {existsSync} from 'node:fs'
import {copyFile, mkdir, readFile, readdir, rm} from 'node:fs/promises'
import {availableParallelism} from 'node:os'
import {join} from 'node:path'

import {run} from '../util/exec.js'
import type {CcacheRemote} from './ccache-remote.js'
import {joinIcecream, type IceccRun, type IceccScheduler} from './icecc.js'
import {atomicWriteFile, sha256File} from '../util/fsx.js'
import {parseDotConfig, valueOf} from './dotconfig.js'
import {kmake} from './kbuild.js'
import {linkCopy} from './tree.js'

export interface CompileRequest {
  /** the patched tree (not written to: the build works in a linked copy) */
  tree: string
  config: string
  /** scratch space for the linked copy and the objects */
  work: string
  out: string
  sourceDateEpoch: number
  localversion: string
  jobs: number
  ccacheDir: string
  /** a ccache remote storage shared with other builds (--ccache-remote): read after the local cache, written on a miss */
  ccacheRemote?: CcacheRemote
  /** also write local hits to the remote storage (ccache's reshare): fills a new store from a warm local cache */
  ccacheReshare?: boolean
  /**
   * compile through icecream (--icecc-scheduler): a daemon of this build's joins the scheduler's farm
   * and ccache runs icecc on a miss; the toolchain environment is kept under envCacheDir
   */
  icecc?: {scheduler: IceccScheduler; envCacheDir: string}
  /** where expected object counts are remembered between builds */
  statsDir: string
  logFile?: string
  signal?: AbortSignal
  progress(line: string): void
}

export interface CompiledKernel {
  release: string
  vmlinuz: string
  vmlinuzSha256: string
  objects: number
  modules: number
  /** this build's compiler calls by where ccache found them (local, remote) or not (miss) */
  ccache: CcacheCounts
  /** how the compile went through icecream (--icecc-scheduler) */
  icecc?: IceccRun
}

/** How long the compile waits for its icecream daemon to reach the scheduler (two or three of iceccd's 3 s retries) before it compiles without icecream. */
export const ICECC_CONNECT_WAIT_MS = 20_000

export interface CcacheCounts {
  local: number
  remote: number
  miss: number
}

/** The variables that make two builds of the same inputs byte-identical (docs/design.md "Reproducible kernel builds"). */
export function reproducibleEnv(sourceDateEpoch: number): Record<string, string> {
  return {
    KBUILD_BUILD_TIMESTAMP: new Date(sourceDateEpoch * 1000).toUTCString(),
    KBUILD_BUILD_USER: 'cvm-image',
    KBUILD_BUILD_HOST: 'cvm-image',
    // the "#1" in uname -v: otherwise it counts builds in the object directory
    KBUILD_BUILD_VERSION: '1',
    SOURCE_DATE_EPOCH: String(sourceDateEpoch),
    TZ: 'UTC',
    LC_ALL: 'C',
  }
}

/** The ccache settings of a kernel build, beside reproducibleEnv: what ccache hashes, and where it stores. */
export function ccacheEnv(o: {ccacheDir: string; baseDir: string; remote?: CcacheRemote; reshare?: boolean}): Record<string, string> {
  return {
    CCACHE_DIR: o.ccacheDir,
    CCACHE_BASEDIR: o.baseDir,
    CCACHE_NOHASHDIR: '1',
    CCACHE_COMPILERCHECK: 'content',
    // depend mode: a miss runs the compiler once and hashes the headers its -MMD list names
    // (kbuild's -Wp,-MMD), instead of running the preprocessor first for a second hash. Measured on
    // the 5.4 lean kernel/ directory, cold: 105 CPU s with ccache's default mode, 83 in depend
    // mode, 76 with no ccache (docs/testing.md); hits are the same (direct mode).
    CCACHE_DEPEND: '1',
    ...(o.remote
      ? {
          // ccache's log (log_file) shows it with the password as ******** (parseCcacheRemote avoids the one form it prints whole)
          CCACHE_REMOTE_STORAGE: o.remote.storage(),
          ...(o.reshare ? {CCACHE_RESHARE: '1'} : {}),
        }
      : {}),
  }
}

/** ccache's counters (--print-stats, ccache 4.7's names) for a cache directory. */
export async function ccacheCounters(ccacheDir: string): Promise<Record<string, number>> {
  const {stdout} = await run('ccache', ['--print-stats'], {env: {CCACHE_DIR: ccacheDir}, what: 'read the ccache statistics'})
  const counters: Record<string, number> = {}
  for (const m of stdout.matchAll(/^(\w+)\t(\d+)$/gm)) counters[m[1]] = Number(m[2])
  return counters
}

/** Calls counted between two --print-stats: a direct or preprocessed hit is local_storage_hit or remote_storage_hit. */
export function ccacheCountsBetween(before: Record<string, number>, after: Record<string, number>): CcacheCounts {
  const d = (k: string) => (after[k] ?? 0) - (before[k] ?? 0)
  return {local: d('local_storage_hit'), remote: d('remote_storage_hit'), miss: d('cache_miss')}
}

const OBJECT_LINE = /^\s+(CC|AS|LD|AR)(?: \[M\])?\s+\S+\.(o|a)$/

/**
 * make bzImage modules with ccache, out of tree, then installs stripped modules into out/modules.
 * The object directory sits directly inside a linked copy of the tree, so kbuild uses the
 * relative srctree "..": no absolute path reaches the objects, and ccache hits across builds.
 */
export async function compileKernel(r: CompileRequest): Promise<CompiledKernel> {
  const src = join(r.work, 'src')
  await mkdir(r.work, {recursive: true})
  await linkCopy(r.tree, src)
  const objdir = join(src, '.cvm-build')
  await mkdir(objdir, {recursive: true})
  await copyFile(r.config, join(objdir, '.config'))
  const config = parseDotConfig(await readFile(r.config, 'utf8'))
  const hasModules = valueOf(config, 'CONFIG_MODULES') === 'y'

  const env = {...reproducibleEnv(r.sourceDateEpoch), ...ccacheEnv({ccacheDir: r.ccacheDir, baseDir: src, remote: r.ccacheRemote, reshare: r.ccacheReshare})}
  const vars = {CC: 'ccache gcc', HOSTCC: 'ccache gcc', LOCALVERSION: r.localversion}
  const icecc = r.icecc && (await joinIcecream({scheduler: r.icecc.scheduler, envCacheDir: r.icecc.envCacheDir, localJobs: availableParallelism(), waitMs: ICECC_CONNECT_WAIT_MS, logFile: r.logFile, signal: r.signal, progress: r.progress}))
  let made: Omit<CompiledKernel, 'icecc'>
  try {
    made = await makeKernel(r, {src, objdir, hasModules, env: {...env, ...icecc?.env}, vars})
  } finally {
    await icecc?.finish()
  }
  return {...made, ...(icecc ? {icecc: icecc.run} : {})}
}

/** make bzImage (and modules) in objdir with env and vars, then install the modules and copy out what compile keeps. */
async function makeKernel(r: CompileRequest, k: {src: string; objdir: string; hasModules: boolean; env: Record<string, string>; vars: Record<string, string>}): Promise<Omit<CompiledKernel, 'icecc'>> {
  const {src, objdir, hasModules, env, vars} = k
  const statsFile = join(r.statsDir, `${await sha256File(r.config)}.json`)
  const expected = existsSync(statsFile) ? (JSON.parse(await readFile(statsFile, 'utf8')) as {objects: number}).objects : undefined
  let built = 0
  await mkdir(r.ccacheDir, {recursive: true})
  const countersBefore = await ccacheCounters(r.ccacheDir)
  await kmake({
    tree: src,
    objdir,
    jobs: r.jobs,
    vars,
    env,
    targets: ['bzImage', ...(hasModules ? ['modules'] : [])],
    logFile: r.logFile,
    signal: r.signal,
    what: 'build the kernel',
    onLine: (line) => {
      if (!OBJECT_LINE.test(line)) return
      built++
      r.progress(expected ? `objects built: ${built} of ~${expected} (${Math.min(99, Math.floor((100 * built) / expected))}%)` : `objects built: ${built} (first build of this config: no estimate yet)`)
    },
  })
  await atomicWriteFile(statsFile, JSON.stringify({objects: built}) + '\n')
  // another build sharing this ccache directory at the same time adds its calls: a figure for people, not a check
  const ccache = ccacheCountsBetween(countersBefore, await ccacheCounters(r.ccacheDir))

  const release = (await kmake({tree: src, objdir, vars, env, targets: ['-s', 'kernelrelease'], what: 'read the kernel release'})).stdout.trim().split('\n').at(-1)!
  const modulesOut = join(r.out, 'modules')
  await mkdir(modulesOut, {recursive: true})
  let modules = 0
  if (hasModules) {
    r.progress('installing modules (stripped)')
    await kmake({
      tree: src,
      objdir,
      vars: {...vars, INSTALL_MOD_PATH: modulesOut, INSTALL_MOD_STRIP: '1', DEPMOD: (await whichDepmod()) ?? 'depmod'},
      env,
      targets: ['modules_install'],
      logFile: r.logFile,
      signal: r.signal,
      what: 'install the modules',
    })
    const dir = join(modulesOut, 'lib', 'modules', release)
    // build/ and source/ point into this build's scratch space
    await rm(join(dir, 'build'), {force: true})
    await rm(join(dir, 'source'), {force: true})
    modules = (await listFiles(dir)).filter((f) => f.endsWith('.ko')).length
  }
  const vmlinuz = join(r.out, 'vmlinuz')
  await copyFile(join(objdir, 'arch', 'x86', 'boot', 'bzImage'), vmlinuz)
  await copyFile(join(objdir, 'System.map'), join(r.out, 'System.map'))
  await copyFile(join(objdir, '.config'), join(r.out, 'config'))
  return {release, vmlinuz, vmlinuzSha256: await sha256File(vmlinuz), objects: built, modules, ccache}
}

async function whichDepmod(): Promise<string | undefined> {
  for (const p of ['/usr/sbin/depmod', '/sbin/depmod']) if (existsSync(p)) return p
  return undefined
}

async function listFiles(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return []
  const out: string[] = []
  for (const e of await readdir(dir, {withFileTypes: true})) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...(await listFiles(p)))
    else out.push(p)
  }
  return out
}

/** The ccache hit figures, for the benchmark. */
export async function ccacheStats(ccacheDir: string): Promise<string> {
  return (await run('ccache', ['-s'], {env: {CCACHE_DIR: ccacheDir}, reject: false})).stdout
}
