import {spawn} from 'node:child_process'
import {existsSync, readdirSync, readFileSync, readlinkSync} from 'node:fs'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {HostError, StageError} from '../errors.js'
import {mountsUnder} from '../../test/helpers/mounts.js'
import {repoRoot} from '../../test/helpers/paths.js'
import {run} from './exec.js'

const isRoot = process.getuid?.() === 0
const alive = (pid: number) => existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(safeRead(`/proc/${pid}/status`))
function safeRead(p: string): string {
  try {
    return readFileSync(p, 'utf8')
  } catch {
    return ''
  }
}
const waitFor = async (what: () => boolean | Promise<boolean>, ms: number) => {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await what()) return true
    await new Promise((r) => setTimeout(r, 50))
  }
  return false
}
/** host pids of processes whose command line holds `marker` (pids printed inside the child's PID namespace are not host pids) */
function pidsWith(marker: string): number[] {
  const pids: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    if (safeRead(`/proc/${name}/cmdline`).split('\0').includes(marker)) pids.push(Number(name))
  }
  return pids.filter(alive)
}
/** a sleep whose argument is unique to this test run */
const uniqueSleep = () => `600.${Math.floor(Math.random() * 1e6)}`
const ownMounts = () => readFileSync('/proc/self/mountinfo', 'utf8')

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cvm-exec-'))
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

describe('run(): every child is contained', () => {
  it('a missing program is named as such', async () => {
    await expect(run('no-such-program-cvm', [], {what: 'test'})).rejects.toThrow(HostError)
    await expect(run('no-such-program-cvm', [])).rejects.toThrow(/no-such-program-cvm: not found on this host/)
  })

  it('passes stdin, output and exit codes through the wrapper', async () => {
    expect((await run('sh', ['-c', 'cat; echo "$1"', 'sh', 'a b'], {input: 'in\n'})).stdout).toBe('in\na b')
    expect((await run('sh', ['-c', 'exit 7'], {reject: false})).exitCode).toBe(7)
  })

  it('stdoutFile takes stdout byte for byte (binary, replacing what was there) and leaves stderr to the result', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'exec-out-'))
    const out = join(dir, 'out.bin')
    await run('sh', ['-c', 'echo old'], {stdoutFile: out})
    const r = await run('sh', ['-c', 'printf "\\000\\377\\n\\n"; echo err >&2'], {stdoutFile: out})
    expect([...(await readFile(out))]).toEqual([0, 255, 10, 10])
    expect(r.stdout).toBe('')
    expect(r.stderr).toBe('err')
    await rm(dir, {recursive: true})
  })

  it('orphans of the command are reaped: a command that waits for one to be gone ends (node as the command, which reaps no stranger)', async () => {
    const f = join(dir, 'orphan.pid')
    const script = `(sleep 0.3 & echo $! > ${f}); p=$(cat ${f}); while kill -0 $p 2>/dev/null; do sleep 0.1; done; echo gone`
    const r = await run(process.execPath, ['-e', `process.stdout.write(require('child_process').execFileSync('sh', ['-c', ${JSON.stringify(script)}]))`], {timeout: 20_000})
    expect(r.stdout).toBe('gone')
  }, 30_000)

  it('a child that signals its own process group (as mmdebstrap does on a full disk) ends in an error, not in the death of cvm-image', async () => {
    const err = await run('sh', ['-c', 'kill -HUP 0; sleep 5'], {what: 'hang up'}).catch((e) => e)
    expect(err).toBeInstanceOf(StageError)
    expect(err.message).toMatch(/^hang up: sh -c .* (was killed by SIGHUP|exited with 129 \(SIGHUP\))$/)
  })

  it('a full disk (a write to /dev/full fails with ENOSPC) says "no space left on device"', async () => {
    const err = await run('dd', ['if=/dev/zero', 'of=/dev/full', 'bs=1k', 'count=1'], {what: 'write the image'}).catch((e) => e)
    expect(err).toBeInstanceOf(StageError)
    expect(err.message).toMatch(/^write the image: no space left on device \(dd .* exited with 1\)$/)
  })

  it('an abort ends the whole group, grandchildren included, and a group that ignores SIGTERM is killed after 5 s', async () => {
    const marker = uniqueSleep()
    const abort = new AbortController()
    const p = run('sh', ['-c', `trap "" TERM; sh -c 'trap "" TERM; sleep ${marker}' & wait`], {signal: abort.signal}).catch((e) => e)
    expect(await waitFor(() => pidsWith(marker).length === 1, 5000)).toBe(true)
    const t0 = Date.now()
    abort.abort()
    const err = await p
    expect(err).toBeInstanceOf(StageError)
    expect(err.message).toBe('sh was cancelled')
    expect(Date.now() - t0).toBeGreaterThan(4000)
    expect(Date.now() - t0).toBeLessThan(9000)
    expect(await waitFor(() => pidsWith(marker).length === 0, 2000)).toBe(true)
  }, 20_000)

  it('a timeout ends the whole group too', async () => {
    const marker = uniqueSleep()
    const err = await run('sh', ['-c', `sleep ${marker} & wait`], {timeout: 1000, what: 'wait'}).catch((e) => e)
    expect(err.message).toBe('sh timed out after 1000 ms (wait)')
    expect(await waitFor(() => pidsWith(marker).length === 0, 2000)).toBe(true)
  }, 20_000)

  it.runIf(isRoot)('as root, SIGKILL of cvm-image kills the child and every process under it, and their mounts are gone (a real tmpfs mount)', async () => {
    const marker = uniqueSleep()
    const mnt = join(dir, 'mnt')
    const script = `mkdir -p ${mnt} && mount -t tmpfs cvm-exec-test ${mnt} && touch ${mnt}/mounted && (sleep ${marker} & wait)`
    const parent = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'test/helpers/run-child.ts'), JSON.stringify(['sh', '-c', script])], {cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    parent.stdout.on('data', (d: Buffer) => (out += d.toString()))
    parent.stderr.on('data', (d: Buffer) => (out += d.toString()))
    const exited = new Promise((r) => parent.once('exit', r))
    try {
      expect(await waitFor(() => pidsWith(marker).length === 1, 30_000)).toBe(true)
      // the mount is in the child's own namespace: this process's mountinfo never shows it, the check of every process's does
      expect(ownMounts()).not.toContain('cvm-exec-test')
      expect(existsSync(join(mnt, 'mounted'))).toBe(false)
      expect(mountsUnder(mnt)).toEqual([expect.objectContaining({where: mnt, fstype: 'tmpfs', source: 'cvm-exec-test'})])
    } finally {
      parent.kill('SIGKILL')
      await exited
    }
    expect(await waitFor(() => mountsUnder(mnt).length === 0, 5000), `left mounted: ${JSON.stringify(mountsUnder(mnt))}`).toBe(true)
    expect(await waitFor(() => pidsWith(marker).length === 0, 5000)).toBe(true)
    expect(out).toMatch(/^started \d+/)
  }, 60_000)

  it.runIf(isRoot)('the mount check sees a leaked mount: a child in a mount namespace of its own but not the PID namespace outlives its parent, and its tmpfs stays', async () => {
    const marker = uniqueSleep()
    const mnt = join(dir, 'leak')
    const script = `mkdir -p ${mnt} && mount -t tmpfs cvm-leak-test ${mnt} && exec sleep ${marker}`
    // what run() would do without `unshare --pid --kill-child`: the parent (cvm-image) is killed, the child stays
    const parent = spawn('sh', ['-c', `unshare --mount --propagation private sh -c '${script}' & wait`], {stdio: 'ignore'})
    const exited = new Promise((r) => parent.once('exit', r))
    try {
      expect(await waitFor(() => pidsWith(marker).length === 1, 10_000)).toBe(true)
      expect(await waitFor(() => mountsUnder(mnt).length === 1, 5000)).toBe(true)
      parent.kill('SIGKILL')
      await exited
      await new Promise((r) => setTimeout(r, 300))
      // the leak: the child lives on with its mount; the old check (this process's mountinfo) is blind to it
      expect(pidsWith(marker)).toHaveLength(1)
      expect(ownMounts()).not.toContain('cvm-leak-test')
      const leaked = mountsUnder(mnt)
      expect(leaked).toEqual([expect.objectContaining({pid: pidsWith(marker)[0], where: mnt, fstype: 'tmpfs', source: 'cvm-leak-test'})])
      expect(leaked[0]!.ns).not.toBe(readlinkSync('/proc/self/ns/mnt'))
    } finally {
      for (const pid of pidsWith(marker)) process.kill(pid, 'SIGKILL')
    }
    // the namespace ends with its last process, and its mount with it
    expect(await waitFor(() => mountsUnder(mnt).length === 0, 5000)).toBe(true)
  }, 30_000)

  it.runIf(!isRoot)('without root (runs only as non-root; the test above covers root), SIGKILL of cvm-image kills the direct child', async () => {
    const marker = uniqueSleep()
    const parent = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'test/helpers/run-child.ts'), JSON.stringify(['sleep', marker])], {cwd: repoRoot, stdio: 'ignore'})
    expect(await waitFor(() => pidsWith(marker).length === 1, 30_000)).toBe(true)
    parent.kill('SIGKILL')
    expect(await waitFor(() => pidsWith(marker).length === 0, 5000)).toBe(true)
  }, 60_000)
})
