import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {existsSync} from 'node:fs'
import {chown, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import type {IceccScheduler} from '../../src/kernel/icecc.js'
import {run} from '../../src/util/exec.js'
import {freeLoopbackPort} from '../../src/util/net.js'

const SCHEDULER = '/usr/sbin/icecc-scheduler'
const ICECCD = '/usr/sbin/iceccd'

/**
 * Why an icecream farm cannot be started here, or undefined when it can: it needs root (network
 * namespaces, a veth pair, mounts) and network namespaces.
 */
export function icecreamSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root: the farm has a daemon in a network namespace of its own, joined by a veth pair'
  if (spawnSync('unshare', ['--net', 'true']).status !== 0) return 'no network namespaces here (unshare --net fails)'
  if (spawnSync('ip', ['-V']).status !== 0) return 'ip (iproute2) is missing: apt-get install iproute2'
  return undefined
}

/** Debian's icecream on this machine: a scheduler, and a compile host in a network namespace of its own. */
export interface IcecreamFarm {
  /** the scheduler, on the host side of the veth pair: both namespaces reach it */
  scheduler: IceccScheduler
  /** the compile host: its address (as the scheduler knows it) and its daemon's log */
  remote: {address: string; log(): Promise<string>}
  schedulerLog(): Promise<string>
  /** stops the daemon and the scheduler, removes the namespace (and with it the veth pair) and the temp directory */
  stop(): Promise<void>
}

/** The shell that starts each icecream program: a private /var/run/icecc (its pid file would replace a system daemon's), then the program. */
const PRIVATE_RUNDIR = 'set -e; mkdir -p /var/run/icecc; mount -t tmpfs -o size=1m cvm-icecream-test /var/run/icecc'

/**
 * Starts icecc-scheduler and a compile host's iceccd, each as the icecc user (icecream drops root),
 * the daemon in a network namespace of its own joined to this one by a veth pair on a /30 of
 * 198.18.0.0/15 (RFC 2544's benchmark range: no real host). The scheduler listens on the host side
 * of the pair only. ICECC_TESTS, icecream's own test switch, keeps their discovery broadcasts on
 * loopback instead of every interface of this machine.
 *
 * The compile host reads a still /proc/stat (bound over it in its mount namespace): it sees an
 * idle CPU. icecream gives no job to a host whose CPU is busy (iceccd reports its load from
 * /proc/stat; the scheduler skips a host at 1000), and this shared machine never is idle. Nothing
 * else of the host is simulated: it unpacks the toolchain, chroots and compiles.
 */
export async function startIcecreamFarm(): Promise<IcecreamFarm> {
  for (const p of [SCHEDULER, ICECCD]) if (!existsSync(p)) throw new Error(`${p} is missing: apt-get install -y icecc (cvm-image doctor --install installs the tests' packages)`)
  const id = Math.random().toString(16).slice(2, 8)
  const ns = `cvm-ice-${id}`
  const [vethHere, vethThere] = [`cvi${id}a`, `cvi${id}b`]
  const subnet = await freeSubnet()
  const [here, there] = [`${subnet}.1`, `${subnet}.2`]
  const dir = await mkdtemp(join(tmpdir(), 'cvm-icecream-'))
  const children: ChildProcess[] = []
  // not through run(): as root it gives each command a mount namespace of its own, where `ip netns add` would pin the namespace for that command only
  const ip = (...args: string[]) => {
    const r = spawnSync('ip', args, {encoding: 'utf8'})
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')} failed (${r.status}): ${r.stderr}`)
  }
  const stop = async () => {
    for (const c of children) {
      if (c.exitCode !== null || c.signalCode !== null) continue
      const exited = new Promise((r) => c.once('exit', r))
      c.kill('SIGTERM')
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))])
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    }
    spawnSync('ip', ['netns', 'del', ns])
    spawnSync('ip', ['link', 'del', vethHere])
    await rm(dir, {recursive: true, force: true})
  }
  try {
    ip('netns', 'add', ns)
    ip('link', 'add', vethHere, 'type', 'veth', 'peer', 'name', vethThere)
    ip('link', 'set', vethThere, 'netns', ns)
    ip('addr', 'add', `${here}/30`, 'dev', vethHere)
    ip('link', 'set', vethHere, 'up')
    ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${there}/30`, 'dev', vethThere)
    ip('netns', 'exec', ns, 'ip', 'link', 'set', vethThere, 'up')
    ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up')
    // icecream drops root for the icecc user, who writes the logs and environments here
    const icecc = (await run('getent', ['passwd', 'icecc'], {reject: false})).stdout.split(':')
    if (icecc.length >= 4) await chown(dir, Number(icecc[2]), Number(icecc[3]))
    const still = join(dir, 'stat.still')
    await writeFile(still, (await readFile('/proc/stat', 'utf8')).replace(/^cpu .*$/m, 'cpu  0 0 0 1000000 0 0 0 0 0 0'))

    const env = {...process.env, ICECC_TESTS: '1'}
    const start = (argv: string[], out: string) => {
      const c = spawn('setpriv', ['--pdeathsig', 'KILL', '--', ...argv], {env, stdio: ['ignore', 'pipe', 'pipe']})
      let text = ''
      c.stdout!.on('data', (b: Buffer) => (text += b.toString()))
      c.stderr!.on('data', (b: Buffer) => (text += b.toString()))
      c.once('exit', () => void writeFile(join(dir, out), text).catch(() => {}))
      children.push(c)
      return c
    }
    const schedulerLog = join(dir, 'scheduler.log')
    const remoteLog = join(dir, 'remote.log')
    const read = (f: string) => (existsSync(f) ? readFile(f, 'utf8') : Promise.resolve(''))
    // the scheduler listens on PORT and PORT+1 (its text port): a free loopback port and the next, tried a few times
    let port = 0
    for (let attempt = 0; attempt < 5 && !port; attempt++) {
      const p = await freeLoopbackPort()
      const sched = start(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', `${PRIVATE_RUNDIR}; exec "$@"`, 'sh', SCHEDULER, '-p', String(p), '-i', vethHere, '-l', schedulerLog, '-vvv'], 'scheduler.out')
      const deadline = Date.now() + 10_000
      while (Date.now() < deadline && sched.exitCode === null && !/scheduler ready/.test(await read(schedulerLog))) await new Promise((r) => setTimeout(r, 100))
      if (/scheduler ready/.test(await read(schedulerLog))) port = p
      else if (sched.exitCode === null) sched.kill('SIGKILL')
    }
    if (!port) throw new Error(`icecc-scheduler did not start on ${here}: ${await read(schedulerLog)}`)

    const daemonScript = `${PRIVATE_RUNDIR}; mount --bind "$1" /proc/stat; shift; exec "$@"`
    start(
      ['ip', 'netns', 'exec', ns, 'unshare', '--mount', '--propagation', 'private', 'env', `ICECC_TEST_SOCKET=${join(dir, 'remote.socket')}`, 'sh', '-c', daemonScript, 'sh', still, ICECCD,
        '-s', `${here}:${port}`, '-m', '2', '-N', 'cvm-remote', '-b', join(dir, 'remote-envs'), '-l', remoteLog, '-vvv'],
      'remote.out',
    )
    const deadline = Date.now() + 30_000
    while (!/Connected to scheduler/.test(await read(remoteLog))) {
      if (Date.now() > deadline) throw new Error(`the compile host's iceccd did not reach the scheduler at ${here}:${port} within 30 s: ${await read(remoteLog)}`)
      await new Promise((r) => setTimeout(r, 200))
    }
    return {scheduler: {host: here, port}, remote: {address: there, log: () => read(remoteLog)}, schedulerLog: () => read(schedulerLog), stop}
  } catch (e) {
    await stop()
    throw e
  }
}

/** 198.18.N (RFC 2544's benchmark range), an N no interface of this machine has an address in: the pair takes 198.18.N.1 and .2 of a /30. */
async function freeSubnet(): Promise<string> {
  const used = (await run('ip', ['-4', '-o', 'addr'])).stdout
  for (;;) {
    const prefix = `198.18.${1 + Math.floor(Math.random() * 254)}`
    if (!used.includes(`${prefix}.`)) return prefix
  }
}
