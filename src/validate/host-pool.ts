import {hostname} from 'node:os'

import {CvmError, HostError, StageError} from '../errors.js'
import {connect, SshUnreachableError, type HostKeyPin, type SshSession} from '../remote/ssh.js'
import {takeHostLock} from './host-lock.js'
import {RemoteHost} from './remote-host.js'

/** One host of the pool: its address and how its key is pinned (its own fingerprint, or --host-key / known_hosts). */
export interface PoolMember extends HostKeyPin {
  address: string
}

export interface PoolOptions {
  /** private key file; default: the SSH agent */
  identity?: string
  identityPassphraseFile?: string
  /** how long a boot waits while every host is down or busy with other runs (default 30 min) */
  waitMs?: number
  /** how often the hosts are tried again while waiting (default 15 s) */
  retryMs?: number
  /** milliseconds for a host's SSH handshake before it counts as down (default 20 s) */
  connectTimeoutMs?: number
  signal?: AbortSignal
  progress?: (line: string) => void
}

/** A host given to one boot: its connection, until release(). */
export interface HostLease {
  address: string
  host: RemoteHost
  release(): Promise<void>
}

export const DEFAULT_HOST_WAIT_MS = 30 * 60_000

interface Member {
  target: PoolMember
  session?: SshSession
  host?: RemoteHost
  /** given to a boot of this run (or being tried for one) */
  inUse: boolean
  /** found down: not tried again before this time (a host that times out costs each boot its timeout once a round) */
  down?: {until: number; why: string}
}

/**
 * A pool of validation hosts (docs/host-pool.md): each boot takes a host that is up and whose lock
 * (src/validate/host-lock.ts) it can take, trying them in the order given; a host that is down or
 * busy is skipped for the next one. When none is free the boot waits, trying again every retryMs,
 * for at most waitMs (time spent waiting for this run's own boots does not count), then fails naming
 * each host and why. A host key that does not match, or a login that fails, fails the run at once.
 */
export class HostPool {
  private readonly members: Member[]
  private readonly waiters = new Set<() => void>()
  private closed = false

  constructor(
    targets: readonly PoolMember[],
    private readonly opts: PoolOptions = {},
  ) {
    if (targets.length === 0) throw new StageError('a pool of validation hosts needs at least one host')
    this.members = targets.map((target) => ({target, inUse: false}))
  }

  get size(): number {
    return this.members.length
  }

  /** Takes a free host for the boot `boot` (a name for messages and the lock's owner line). */
  async acquire(boot: string): Promise<HostLease> {
    const {signal} = this.opts
    const waitMs = this.opts.waitMs ?? DEFAULT_HOST_WAIT_MS
    const who = `${hostname()} pid ${process.pid} (${boot})`
    let waitingSince: number | undefined
    let told = ''
    for (;;) {
      if (signal?.aborted) throw new StageError(`waiting for a validation host for ${boot} was cancelled`)
      if (this.closed) throw new StageError(`the pool of validation hosts was closed before ${boot} got one`)
      const why: string[] = []
      for (const m of this.members) {
        if (m.inUse) {
          why.push(`${m.target.address}: running another boot of this validation`)
          continue
        }
        if (m.down && Date.now() < m.down.until) {
          why.push(`${m.target.address}: ${m.down.why}`)
          continue
        }
        m.inUse = true
        let leased = false
        try {
          const r = await this.tryMember(m, who)
          if (r.lease) {
            leased = true
            return r.lease
          }
          why.push(`${m.target.address}: ${r.why}`)
        } finally {
          if (!leased) m.inUse = false
        }
      }
      const ownBoots = this.members.some((m) => m.inUse)
      // only the wait on other runs and on hosts that are down is bounded: this run's own boots end by their own timeouts
      waitingSince = ownBoots ? undefined : (waitingSince ?? Date.now())
      if (waitingSince !== undefined && Date.now() - waitingSince >= waitMs) {
        throw new HostError(`no validation host was free for ${boot} within ${Math.round(waitMs / 1000)} s: every one of the ${this.members.length} is down or busy`, {
          details: why.map((w) => `  ${w}`),
          hint: 'bring a host up, wait for the other run to finish, add hosts to the pool, or give --host-wait more seconds (docs/host-pool.md)',
        })
      }
      const line = ownBoots ? `${boot} waits for a free validation host: ${why.join('; ')}` : `${boot} waits for a validation host (up to ${Math.round((waitMs - (Date.now() - waitingSince!)) / 1000)} s more): ${why.join('; ')}`
      const gist = why.join('; ')
      if (gist !== told) this.opts.progress?.(line)
      told = gist
      await this.pause(ownBoots ? undefined : Math.min(this.opts.retryMs ?? 15_000, waitMs - (Date.now() - waitingSince!)))
    }
  }

  /**
   * Connects to every host at once, before any work: a host key that does not match, or a login
   * that fails, is refused here; a host that is down is left for the boots to skip (and retry).
   */
  async connectAll(): Promise<void> {
    await Promise.all(
      this.members.map(async (m) => {
        try {
          await this.session(m)
        } catch (e) {
          if (!(e instanceof SshUnreachableError)) throw e
          m.down = {until: Date.now() + (this.opts.retryMs ?? 15_000), why: `down: ${e.message.replace(/^cannot reach SSH server \S+: /, '')}`}
        }
      }),
    )
  }

  private async session(m: Member): Promise<SshSession> {
    if (!m.session) {
      const session = await connect(m.target.address, {
        hostKey: m.target.hostKey,
        knownHostsFile: m.target.knownHostsFile,
        privateKey: this.opts.identity,
        passphraseFile: this.opts.identityPassphraseFile,
        keepaliveInterval: 10_000,
        readyTimeout: this.opts.connectTimeoutMs ?? 20_000,
        signal: this.opts.signal,
      })
      m.session = session
      m.host = new RemoteHost(session)
    }
    return m.session
  }

  /** Closes every connection: kills what was started, removes temp files, and so releases every lock still held. */
  async close(): Promise<void> {
    this.closed = true
    this.wakeAll()
    for (const m of this.members) {
      const h = m.host
      m.host = m.session = undefined
      await h?.cleanup().catch(() => undefined)
    }
  }

  private async tryMember(m: Member, who: string): Promise<{lease?: HostLease; why?: string}> {
    const {address} = m.target
    try {
      const lock = await takeHostLock(await this.session(m), who)
      m.down = undefined
      if (!lock.held) return {why: `busy: its lock is held by ${lock.holder}, for ${lock.ageS} s`}
      if (lock.brokeStale) this.opts.progress?.(`${address}: removed a stale lock of ${lock.brokeStale} (its keeper no longer runs there)`)
      return {
        lease: {
          address,
          host: m.host!,
          release: async () => {
            await lock.release().catch(() => undefined)
            m.inUse = false
            this.wakeAll()
          },
        },
      }
    } catch (e) {
      // a key refusal, a failed login, a cancel: not the host being down
      if (e instanceof CvmError && !(e instanceof SshUnreachableError)) throw e
      // down: a connection refused or timed out, or one that dropped since (the next try connects again)
      const h = m.host
      m.host = m.session = undefined
      await h?.cleanup().catch(() => undefined)
      const why = `down: ${e instanceof SshUnreachableError ? e.message.replace(/^cannot reach SSH server \S+: /, '') : (e as Error).message}`
      m.down = {until: Date.now() + (this.opts.retryMs ?? 15_000), why}
      return {why}
    }
  }

  /** Until a boot of this run releases its host, the pool closes, an abort, or ms pass. */
  private pause(ms: number | undefined): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.opts.signal?.removeEventListener('abort', done)
        this.waiters.delete(done)
        resolve()
      }
      this.waiters.add(done)
      const timer = ms === undefined ? undefined : setTimeout(done, Math.max(0, ms))
      this.opts.signal?.addEventListener('abort', done, {once: true})
    })
  }

  private wakeAll(): void {
    for (const w of [...this.waiters]) w()
  }
}
