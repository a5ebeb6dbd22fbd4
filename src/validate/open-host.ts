import {connect} from '../remote/ssh.js'
import {LocalHost, type ValidationHost} from './host.js'
import {RemoteHost} from './remote-host.js'

export interface HostTarget {
  /** user@host[:port] of a remote validation host; unset: this machine */
  host?: string
  /** pinned host key: SHA256:<base64> fingerprint */
  hostKey?: string
  /** a known_hosts file to pin the host key from (default ~/.ssh/known_hosts) */
  knownHosts?: string
  /** private key file; default: the SSH agent */
  identity?: string
  signal?: AbortSignal
}

/**
 * The machine QEMU runs on: this one, or a remote host over SSH whose key is pinned (a fingerprint
 * or known_hosts); an unknown or changed key is refused before anything is sent.
 */
export async function openValidationHost(t: HostTarget): Promise<ValidationHost> {
  if (!t.host) return new LocalHost()
  const session = await connect(t.host, {hostKey: t.hostKey, knownHostsFile: t.knownHosts, privateKey: t.identity, keepaliveInterval: 10_000, signal: t.signal})
  return new RemoteHost(session)
}
