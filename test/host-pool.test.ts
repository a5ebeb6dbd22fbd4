import {existsSync} from 'node:fs'
import {mkdir, readFile, utimes, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {HostError} from '../src/errors.js'
import {connect, type SshSession} from '../src/remote/ssh.js'
import {takeHostLock} from '../src/validate/host-lock.js'
import {HostPool, type PoolMember} from '../src/validate/host-pool.js'
import {freeLoopbackPort} from '../src/util/net.js'
import {startSshd, type TestSshd} from './helpers/sshd.js'

// Two real OpenSSH servers on 127.0.0.1, each with its own port and work directory ($TMPDIR): the
// pool's scheduling and the host lock, with trivial remote commands instead of boots.
let a: TestSshd
let b: TestSshd
const sessions: SshSession[] = []
const addr = (s: TestSshd) => `${s.user}@127.0.0.1:${s.port}`
const member = (s: TestSshd): PoolMember => ({address: addr(s), hostKey: s.hostKeyFingerprint})
const lockDir = (s: TestSshd) => join(s.tmpDir, 'cvm-image-host.lock')
/** another run's connection to a host, as a second cvm-image would have */
async function otherRun(s: TestSshd): Promise<SshSession> {
  const session = await connect(addr(s), {hostKey: s.hostKeyFingerprint, privateKey: s.userKeyPath})
  sessions.push(session)
  return session
}
async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

describe('a pool of validation hosts: two real sshd on 127.0.0.1, each with its own work directory', () => {
  beforeAll(async () => {
    ;[a, b] = await Promise.all([startSshd(), startSshd()])
    // a team's pool: one key logs in everywhere
    await writeFile(join(b.dir, 'authorized_keys'), await readFile(`${a.userKeyPath}.pub`), {flag: 'a'})
  })
  afterAll(async () => {
    for (const s of sessions) await s.close().catch(() => undefined)
    await Promise.all([a?.stop(), b?.stop()])
  })

  it('the host lock: one holder at a time, the other run told who holds it; released on release() and when the holder\'s connection ends', async () => {
    const [first, second] = [await otherRun(a), await otherRun(a)]
    const held = await takeHostLock(first, 'run one (emulated)')
    expect(held.held).toBe(true)
    expect(existsSync(lockDir(a))).toBe(true)
    expect(await readFile(join(lockDir(a), 'owner'), 'utf8')).toMatch(/^\d+ \S+ \d+ run one \(emulated\)\n$/)
    const busy = await takeHostLock(second, 'run two')
    expect(busy).toMatchObject({held: false, holder: 'run one (emulated)'})
    // b is another host: its own lock
    const onB = await takeHostLock(await otherRun(b), 'run two')
    expect(onB.held).toBe(true)
    if (onB.held) await onB.release()
    if (held.held) await held.release()
    expect(existsSync(lockDir(a))).toBe(false)
    // a run that dies holding the lock (its connection ends without a release) frees the host
    const third = await takeHostLock(second, 'run two, dying')
    expect(third.held).toBe(true)
    await second.close()
    await until('the dead run\'s lock to go', () => !existsSync(lockDir(a)))
  })

  it('a stale lock (its keeper gone: another boot of the host, a pid no longer running, or no owner line after a minute) is removed by the next run, saying whose it was', async () => {
    const session = await otherRun(a)
    const stale = async (owner: string | undefined, oldDir = false) => {
      await mkdir(lockDir(a))
      if (owner !== undefined) await writeFile(join(lockDir(a), 'owner'), owner)
      if (oldDir) await utimes(lockDir(a), new Date(Date.now() - 120_000), new Date(Date.now() - 120_000))
      const lock = await takeHostLock(session, 'the next run')
      expect(lock.held).toBe(true)
      if (lock.held) await lock.release()
      return lock.held ? lock.brokeStale : undefined
    }
    const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim()
    // a keeper from before the host rebooted
    expect(await stale(`1 00000000-0000-0000-0000-000000000000 1 a run before the reboot\n`)).toBe('a run before the reboot')
    // this boot, but the pid runs no more (or runs another process: the start time differs)
    const dead = (await session.exec(['sh', '-c', 'echo $$'])).stdout.trim()
    expect(await stale(`${dead} ${bootId} 1 a run that was killed\n`)).toBe('a run that was killed')
    expect(await stale(`1 ${bootId} 999999999 pid 1 is not its keeper\n`)).toBe('pid 1 is not its keeper')
    // a taker that died between mkdir and its owner line: stale after a minute, held before
    expect(await stale(undefined, true)).toMatch(/died before writing its owner line/)
    await mkdir(lockDir(a))
    const fresh = await takeHostLock(session, 'the next run')
    expect(fresh).toMatchObject({held: false, holder: expect.stringMatching(/not yet written/)})
    await import('node:fs/promises').then((f) => f.rm(lockDir(a), {recursive: true}))
  })

  it('boots spread over the hosts at once, one boot per host; a third boot waits for one of them, without a deadline', async () => {
    const progress: string[] = []
    const pool = new HostPool([member(a), member(b)], {identity: a.userKeyPath, progress: (l) => progress.push(l), waitMs: 1000, retryMs: 200})
    try {
      const [uki, disk] = await Promise.all([pool.acquire('emulated'), pool.acquire('emulated-disk-boot')])
      expect(new Set([uki.address, disk.address])).toEqual(new Set([addr(a), addr(b)]))
      // both hosts run at once: each command waits for the other host's to have started
      const start = Date.now()
      const mark = (l: typeof uki, other: typeof uki) =>
        l.host.exec('sh', ['-c', 'touch "$TMPDIR/started"; i=0; while [ ! -e "$1" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; [ -e "$1" ]', 'sh', join(other.address === addr(a) ? a.tmpDir : b.tmpDir, 'started')])
      const [r1, r2] = await Promise.all([mark(uki, disk), mark(disk, uki)])
      expect([r1.exitCode, r2.exitCode]).toEqual([0, 0])
      expect(Date.now() - start).toBeLessThan(5000)
      // the third waits (longer than waitMs: this run's own boots do not count against it) until a host is released
      const third = pool.acquire('emulated-secure-boot')
      await new Promise((r) => setTimeout(r, 1500))
      await disk.release()
      const got = await third
      expect(got.address).toBe(disk.address)
      expect(progress.some((l) => /emulated-secure-boot waits for a free validation host: .*running another boot of this validation/.test(l))).toBe(true)
      await Promise.all([uki.release(), got.release()])
      expect(existsSync(lockDir(a)) || existsSync(lockDir(b))).toBe(false)
    } finally {
      await pool.close()
    }
  })

  it('a host that is down or busy with another run is skipped for the next one', async () => {
    const down = `${a.user}@127.0.0.1:${await freeLoopbackPort()}`
    const other = await takeHostLock(await otherRun(a), 'another team member (emulated)')
    const progress: string[] = []
    const pool = new HostPool([{address: down, hostKey: a.hostKeyFingerprint}, member(a), member(b)], {identity: a.userKeyPath, progress: (l) => progress.push(l)})
    try {
      const lease = await pool.acquire('emulated')
      expect(lease.address).toBe(addr(b))
      // nothing of this run reached the busy host: its lock is still the other run's
      expect(await readFile(join(lockDir(a), 'owner'), 'utf8')).toContain('another team member')
      await lease.release()
    } finally {
      await pool.close()
      if (other.held) await other.release()
    }
  })

  it('when no host is free it waits, saying why each is skipped, takes one freed meanwhile, and gives up after --host-wait naming each host', async () => {
    const down = `${a.user}@127.0.0.1:${await freeLoopbackPort()}`
    const holder = await takeHostLock(await otherRun(a), 'a long validation')
    if (!holder.held) throw new Error('the test could not take the lock')
    const progress: string[] = []
    const pool = new HostPool([{address: down, hostKey: a.hostKeyFingerprint}, member(a)], {identity: a.userKeyPath, waitMs: 1500, retryMs: 200, progress: (l) => progress.push(l)})
    const second = new HostPool([member(a)], {identity: a.userKeyPath, waitMs: 10_000, retryMs: 200})
    try {
      const start = Date.now()
      const e = await pool.acquire('emulated').catch((x: unknown) => x)
      expect(Date.now() - start).toBeGreaterThanOrEqual(1400)
      expect(e).toBeInstanceOf(HostError)
      const err = e as HostError
      expect(err.message).toMatch(/no validation host was free for emulated within 2 s/)
      expect(err.details.join('\n')).toMatch(new RegExp(`${down}: down: .*ECONNREFUSED`))
      expect(err.details.join('\n')).toMatch(new RegExp(`${addr(a)}: busy: its lock is held by a long validation, for \\d+ s`))
      expect(err.hint).toMatch(/--host-wait/)
      expect(progress[0]).toMatch(/emulated waits for a validation host \(up to \d+ s more\)/)
      // the same wait ends as soon as the other run lets go
      setTimeout(() => void holder.release(), 700)
      const lease = await second.acquire('emulated')
      expect(lease.address).toBe(addr(a))
      await lease.release()
    } finally {
      await pool.close()
      await second.close()
    }
  })

  it('a host key that does not match is refused, not skipped as down: by the check before any work, and by a boot', async () => {
    const lying = {address: addr(a), hostKey: b.hostKeyFingerprint}
    const refusal = /host key of 127\.0\.0\.1:\d+ is SHA256:\S+, not the pinned .*refusing to connect/
    const pool = new HostPool([lying, member(b)], {identity: a.userKeyPath})
    // a pool of a down host and a good one passes the check: the down one is left for the boots to skip
    const fine = new HostPool([{address: `${a.user}@127.0.0.1:${await freeLoopbackPort()}`, hostKey: a.hostKeyFingerprint}, member(b)], {identity: a.userKeyPath})
    try {
      await expect(pool.connectAll()).rejects.toThrow(refusal)
      await expect(new HostPool([lying, member(b)], {identity: a.userKeyPath}).acquire('emulated')).rejects.toThrow(refusal)
      await fine.connectAll()
      expect(existsSync(lockDir(b))).toBe(false)
    } finally {
      await Promise.all([pool.close(), fine.close()])
    }
  })
})
