import {connect, type HostKeyPin} from '../remote/ssh.js'
import {HostPool, type PoolMember} from './host-pool.js'
import {LocalHost, type ValidationHost} from './host.js'
import type {PoolHost} from './hosts-file.js'
import {RemoteHost} from './remote-host.js'

/** The machine to validate on, and how to trust it: the pin is a SHA256 fingerprint or a known_hosts file (default ~/.ssh/known_hosts). */
export interface HostTarget extends HostKeyPin {
  /** user@host[:port] of a remote validation host, or several (a pool, each pinned by the one pin); unset: this machine */
  host?: string | readonly string[]
  /** a pool from a hosts file, each host with its own pinned key (docs/host-pool.md) */
  hosts?: readonly PoolHost[]
  /** private key file; default: the SSH agent */
  identity?: string
  /** a file whose first line is the identity's passphrase */
  identityPassphraseFile?: string
  /** how long a boot waits while every host of the pool is down or busy */
  hostWaitMs?: number
  signal?: AbortSignal
}

/** The remote hosts a target names, each with its pin: the hosts file's, or the one pin for every --host. */
export function poolMembers(t: HostTarget): PoolMember[] {
  if (t.hosts?.length) return t.hosts.map((h) => ({address: h.address, hostKey: h.hostKey}))
  const addresses = t.host === undefined ? [] : typeof t.host === 'string' ? [t.host] : [...new Set(t.host)]
  return addresses.map((address) => ({address, hostKey: t.hostKey, knownHostsFile: t.knownHostsFile}))
}

/**
 * The pool of remote validation hosts a target names (docs/host-pool.md), or undefined for this
 * machine. Nothing is connected yet: each boot takes a host when it starts.
 */
export function openHostPool(t: HostTarget, progress?: (line: string) => void): HostPool | undefined {
  const members = poolMembers(t)
  if (members.length === 0) return undefined
  return new HostPool(members, {identity: t.identity, identityPassphraseFile: t.identityPassphraseFile, waitMs: t.hostWaitMs, signal: t.signal, progress})
}

/**
 * One machine QEMU runs on: this one, or a remote host over SSH whose key is pinned (a fingerprint
 * or known_hosts); an unknown or changed key is refused before anything is sent. With several
 * hosts, the first (doctor probes each in turn).
 */
export async function openValidationHost(t: HostTarget): Promise<ValidationHost> {
  const [first] = poolMembers(t)
  if (!first) return new LocalHost()
  const session = await connect(first.address, {hostKey: first.hostKey, knownHostsFile: first.knownHostsFile, privateKey: t.identity, passphraseFile: t.identityPassphraseFile, keepaliveInterval: 10_000, signal: t.signal})
  return new RemoteHost(session)
}
