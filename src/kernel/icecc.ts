import {existsSync} from 'node:fs'
import {chown, mkdir, mkdtemp, readFile, readdir, realpath, rename, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {HostError, InputError, StageError} from '../errors.js'
import {run, which} from '../util/exec.js'
import {sha256, sha256File} from '../util/fsx.js'

// Distributed compile through icecream (Debian's icecc 1.4): docs/sharing-compiles.md "Icecream".

/** The port an icecream scheduler listens on when none is given (icecc-scheduler's default). */
export const ICECC_SCHEDULER_PORT = 8765

/** An icecream scheduler's address (--icecc-scheduler). It holds no credential: icecream has none. */
export interface IceccScheduler {
  host: string
  port: number
}

export const schedulerShown = (s: IceccScheduler): string => `${s.host}:${s.port}`

const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/

/** Parses --icecc-scheduler: HOST[:PORT], a host name or an IPv4 address (icecc 1.4 reaches its scheduler over IPv4 only). */
export function parseIceccScheduler(raw: string): IceccScheduler {
  const shown = JSON.stringify(raw)
  const form = `give HOST or HOST:PORT (a host name or an IPv4 address; the port defaults to ${ICECC_SCHEDULER_PORT})`
  if (raw.includes('://')) throw new InputError(`${shown} is not an icecream scheduler address: it is a URL`, {hint: form})
  if (raw.startsWith('[') || (raw.match(/:/g) ?? []).length > 1) {
    throw new InputError(`${shown} is not an icecream scheduler address: icecream 1.4 reaches its scheduler over IPv4 only`, {hint: 'give a host name that resolves to an IPv4 address, or the IPv4 address'})
  }
  const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(raw)
  if (!m || !HOST_NAME.test(m[1])) throw new InputError(`${shown} is not an icecream scheduler address`, {hint: form})
  const port = m[2] === undefined ? ICECC_SCHEDULER_PORT : Number(m[2])
  if (port < 1 || port > 65535) throw new InputError(`${shown}: port ${m[2]} is out of range`, {hint: 'give a port from 1 to 65535'})
  return {host: m[1], port}
}

/** An icecream toolchain environment (icecc-create-env): the compiler, assembler and their libraries, as a tarball ICECC_VERSION names. */
export interface IceccEnvironment {
  tarball: string
  /** the compiler identity it is cached under */
  key: string
  /** made now, or taken from the cache */
  created: boolean
}

/**
 * The files that decide what a remote compile of C gives: the gcc driver, cc1, the assembler gcc
 * runs, and the shared libraries each loads (cc1's optimizers live partly in libisl, libmpfr,
 * libgmp; the assembler in libbfd). Each by its resolved path.
 */
async function compilerFiles(compiler: string): Promise<string[]> {
  const driver = await which(compiler)
  if (!driver) throw new HostError(`${compiler}: not found on this host (needed to compile the kernel)`, {hint: 'apt-get install build-essential'})
  const gcc = await realpath(driver)
  const progName = async (name: string) => (await run(gcc, [`-print-prog-name=${name}`], {what: `find the ${name} ${compiler} runs`})).stdout.trim()
  const cc1 = await realpath(await progName('cc1'))
  const asName = await progName('as')
  const as = asName.includes('/') ? asName : await which(asName)
  if (!as) throw new HostError(`${asName}: not found on this host (the assembler ${compiler} runs)`, {hint: 'apt-get install binutils'})
  const programs = [gcc, cc1, await realpath(as)]
  const libraries: string[] = []
  for (const p of programs) {
    // ldd of a static program exits 1 ("not a dynamic executable"): it has no libraries to list
    const {stdout} = await run('ldd', [p], {reject: false, what: `list the libraries of ${p}`})
    for (const m of stdout.matchAll(/^\s*(?:\S+ => )?(\/\S+) \(0x[0-9a-f]+\)$/gm)) libraries.push(await realpath(m[1]))
  }
  return [...programs, ...[...new Set(libraries)].sort()]
}

/** sha256 over each file that decides a remote compile's output (compilerFiles), by path and content. */
export async function compilerIdentity(compiler = 'gcc'): Promise<string> {
  const lines: string[] = []
  for (const f of await compilerFiles(compiler)) lines.push(`${f} ${await sha256File(f)}`)
  return sha256(lines.join('\n') + '\n')
}

/**
 * The icecream environment of this host's compiler, made once by icecc-create-env and kept under
 * cacheDir/icecc-env/<compiler identity>/ (the tarball keeps the name icecc-create-env gives it, the
 * md5 of its files: remote daemons cache environments by that name). A compiler, assembler or library
 * upgrade changes the identity, and a new environment is made.
 */
export async function iceccEnvironment(o: {cacheDir: string; compiler?: string; logFile?: string; signal?: AbortSignal}): Promise<IceccEnvironment> {
  const compiler = o.compiler ?? 'gcc'
  const key = await compilerIdentity(compiler)
  const root = join(o.cacheDir, 'icecc-env')
  const dir = join(root, key)
  const cached = async () => (existsSync(dir) ? (await readdir(dir)).find((f) => /\.tar(\.\w+)?$/.test(f)) : undefined)
  const have = await cached()
  if (have) return {tarball: join(dir, have), key, created: false}
  await mkdir(root, {recursive: true})
  const scratch = await mkdtemp(join(root, '.new-'))
  try {
    // gzip, icecream's default: every daemon of a farm can unpack it, whatever its libarchive
    const made = await run('icecc-create-env', [(await which(compiler))!], {cwd: scratch, logFile: o.logFile, signal: o.signal, what: "make the icecream toolchain environment of this host's compiler"})
    const name = /^creating (\S+\.tar(?:\.\w+)?)$/m.exec(made.stdout)?.[1]
    if (!name || !existsSync(join(scratch, name))) {
      throw new StageError('icecc-create-env made no environment tarball', {details: made.stdout.split('\n').slice(-10).map((l) => `  | ${l}`), hint: 'run icecc-create-env /usr/bin/gcc by hand to see why'})
    }
    try {
      await rename(scratch, dir)
    } catch (e) {
      // another build made it at the same moment: theirs is as good
      if (!['ENOTEMPTY', 'EEXIST'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e
    }
  } finally {
    await rm(scratch, {recursive: true, force: true})
  }
  return {tarball: join(dir, (await cached())!), key, created: true}
}

const ICECCD = '/usr/sbin/iceccd'
const ROOT_START = [
  'set -e',
  'mkdir -p /var/run/icecc',
  'mount -t tmpfs -o mode=0755,size=1m cvm-iceccd /var/run/icecc',
  'set +e',
  '"$@" & daemon=$!',
  'trap \'kill -TERM "$daemon"\' TERM INT',
  'while kill -0 "$daemon" 2>/dev/null; do wait "$daemon"; done',
].join('\n')

/** A private icecream daemon of one compile: it joins the scheduler's farm, takes no jobs from it, and hands this build's compiles to it. */
export interface IceccDaemon {
  /** its Unix socket: icecc finds it through ICECC_TEST_SOCKET (iceccCompileEnv) */
  socket: string
  /** whether it reached the scheduler within the time given, and the address the scheduler knows it by */
  connected(timeoutMs: number): Promise<string | undefined>
  /** the compiles the scheduler sent to other hosts, by host address */
  sentTo(): Promise<Record<string, number>>
  /** the daemon's log so far */
  log(): Promise<string>
  /** ends the daemon and removes its directory */
  stop(): Promise<void>
}

/** The user iceccd runs as when started by root (Debian's icecc user), as iceccd finds it; else nobody. */
async function iceccUser(): Promise<{uid: number; gid: number}> {
  const {stdout} = await run('getent', ['passwd', 'icecc'], {reject: false})
  const f = stdout.trim().split(':')
  // iceccd's own fallback when there is no icecc user
  return f.length >= 4 ? {uid: Number(f[2]), gid: Number(f[3])} : {uid: 65534, gid: 65533}
}

/**
 * Starts iceccd for one compile: `--no-remote` (this build's machine takes no jobs from the farm),
 * up to localJobs compiles here, the scheduler given (-s), its socket, environments and log in a
 * directory of its own under the temp dir (started by root, iceccd runs as the icecc user, which
 * must reach them). Started by root it also gets a private /var/run/icecc (a tmpfs in the mount
 * namespace every child of a build has): there iceccd writes its pid file, which would otherwise
 * replace a system iceccd's. Returns once its socket exists.
 */
export async function startIceccDaemon(o: {scheduler: IceccScheduler; localJobs: number; signal?: AbortSignal}): Promise<IceccDaemon> {
  const dir = await mkdtemp(join(tmpdir(), 'cvm-iceccd-'))
  const root = process.getuid?.() === 0
  if (root) {
    const u = await iceccUser()
    await chown(dir, u.uid, u.gid)
  }
  const socket = join(dir, 'iceccd.socket')
  const logFile = join(dir, 'iceccd.log')
  // -vvv: the trace names the host the scheduler gave each compile (scheduler_use_cs), which sentTo counts
  const args = ['-s', schedulerShown(o.scheduler), '--no-remote', '-m', String(o.localJobs), '-b', join(dir, 'envs'), '-l', logFile, '-vvv']
  // /usr/sbin is not on every user's PATH
  const iceccd = (await which('iceccd')) ?? (existsSync(ICECCD) ? ICECCD : undefined)
  if (!iceccd) {
    await rm(dir, {recursive: true, force: true})
    throw new HostError('iceccd: not found on this host (needed by --icecc-scheduler)', {hint: "install Debian's icecc (apt-get install icecc; cvm-image doctor lists it)"})
  }
  // as root, a shell stays between: iceccd leaves the process group run() stops, and the init of
  // the PID namespace run() gives it takes no SIGTERM, so the shell passes stop()'s SIGTERM on
  const [cmd, argv] = root ? ['sh', ['-c', ROOT_START, 'sh', iceccd, ...args]] : [iceccd, args]
  const stopper = new AbortController()
  const onAbort = () => stopper.abort()
  o.signal?.addEventListener('abort', onAbort, {once: true})
  let exited: string | undefined
  const done = run(cmd, argv, {env: {ICECC_TEST_SOCKET: socket}, signal: stopper.signal, reject: false, what: 'run the icecream daemon'})
    .then((r) => void (exited = `iceccd exited with ${r.exitCode}: ${(r.stdout + r.stderr).trim().split('\n').slice(-3).join(' / ')}`))
    .catch(() => void (exited = 'iceccd was stopped'))
  const log = async () => (existsSync(logFile) ? readFile(logFile, 'utf8').catch(() => '') : '')
  const stop = async () => {
    o.signal?.removeEventListener('abort', onAbort)
    stopper.abort()
    await done
    await rm(dir, {recursive: true, force: true})
  }
  const deadline = Date.now() + 10_000
  while (!existsSync(socket)) {
    if (exited || Date.now() > deadline) {
      const tail = (await log()).trim().split('\n').slice(-10)
      await stop()
      throw new StageError(`the icecream daemon did not start: ${exited ?? 'no socket after 10 s'}`, {details: tail.map((l) => `  | ${l}`), hint: 'run iceccd -vvv by hand to see why, or build without --icecc-scheduler'})
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return {
    socket,
    log,
    stop,
    async connected(timeoutMs) {
      const until = Date.now() + timeoutMs
      for (;;) {
        const m = /Connected to scheduler \(I am known as (\S+)\)/.exec(await log())
        if (m) return m[1]
        if (exited || Date.now() > until) return undefined
        await new Promise((r) => setTimeout(r, 200))
      }
    },
    async sentTo() {
      return countSentTo(await log())
    },
  }
}

/**
 * The compiles a daemon's scheduler sent to other hosts, by address, read from iceccd's trace
 * (`scheduler_use_cs JOB CLIENT PTR HOST SELF`: HOST is where the job compiles, SELF the daemon's own
 * address; HOST equal to SELF is a compile here).
 */
export function countSentTo(log: string): Record<string, number> {
  const sent: Record<string, number> = {}
  for (const m of log.matchAll(/ scheduler_use_cs \d+ \d+ \S+ (\S+) (\S+)$/gm)) if (m[1] !== m[2]) sent[m[1]] = (sent[m[1]] ?? 0) + 1
  return sent
}

/** How a compile through icecream went. */
export interface IceccRun {
  /** the scheduler, as HOST:PORT */
  scheduler: string
  /** the address the scheduler knew this build's daemon by; absent when it did not answer in time (then nothing went through icecream) */
  knownAs?: string
  /** the toolchain environment sent to the other hosts, and whether it was made for this build */
  environment: string
  environmentCreated: boolean
  /** compiles the scheduler sent to other hosts, by address */
  sentTo: Record<string, number>
}

/** A compile's place in an icecream farm: the variables its compiler calls get, and how to leave. */
export interface IcecreamSession {
  /** for the compile's environment, beside ccacheEnv: empty when the scheduler did not answer (then icecc is not in the way at all) */
  env: Record<string, string>
  run: IceccRun
  /** stops the daemon; where the compiles went */
  finish(): Promise<IceccRun>
}

/**
 * Joins the scheduler's farm for one compile: the toolchain environment (made or cached), a daemon of
 * the compile's own, and the variables that route ccache's misses through icecc. A scheduler that
 * does not answer within waitMs leaves the compile as it is without icecream (iceccd without a
 * scheduler holds each compile for its poll interval, seconds each), and run.knownAs says so.
 */
export async function joinIcecream(o: {scheduler: IceccScheduler; envCacheDir: string; localJobs: number; waitMs: number; logFile?: string; signal?: AbortSignal; progress?: (line: string) => void}): Promise<IcecreamSession> {
  const scheduler = schedulerShown(o.scheduler)
  o.progress?.('icecream: the toolchain environment (icecc-create-env)')
  const environment = await iceccEnvironment({cacheDir: o.envCacheDir, logFile: o.logFile, signal: o.signal})
  o.progress?.(`icecream: joining the scheduler ${scheduler}`)
  const daemon = await startIceccDaemon({scheduler: o.scheduler, localJobs: o.localJobs, signal: o.signal})
  const knownAs = await daemon.connected(o.waitMs)
  const run: IceccRun = {scheduler, ...(knownAs ? {knownAs} : {}), environment: environment.tarball, environmentCreated: environment.created, sentTo: {}}
  if (!knownAs) await daemon.stop()
  let finished = !knownAs
  return {
    env: knownAs ? iceccCompileEnv(environment, daemon) : {},
    run,
    async finish() {
      if (finished) return run
      finished = true
      run.sentTo = await daemon.sentTo()
      await daemon.stop()
      return run
    },
  }
}

/**
 * The variables a compile through icecream needs, beside ccacheEnv: ccache stays in front (a hit
 * never reaches icecream) and runs icecc on a miss (its prefix_command); icecc asks the build's own
 * daemon, and sends the environment to the host the scheduler picks, where the compiler, assembler
 * and libraries are this host's.
 */
export function iceccCompileEnv(environment: IceccEnvironment, daemon: Pick<IceccDaemon, 'socket'>): Record<string, string> {
  return {
    CCACHE_PREFIX: 'icecc',
    ICECC_VERSION: environment.tarball,
    // icecc's one way to a daemon other than the system's /var/run/icecc/iceccd.socket (icecc 1.4's client/main.cpp)
    ICECC_TEST_SOCKET: daemon.socket,
  }
}
