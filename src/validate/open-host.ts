import {LocalHost, type ValidationHost} from './host.js'
import {HostError} from '../errors.js'

export interface HostTarget {
  /** user@host[:port] of a remote validation host; unset: this machine */
  host?: string
  /** pinned host key: SHA256:<base64> fingerprint */
  hostKey?: string
  /** a known_hosts file to pin the host key from */
  knownHosts?: string
  /** private key file; default: the SSH agent, then ~/.ssh/id_ed25519, ~/.ssh/id_rsa */
  identity?: string
  signal?: AbortSignal
}

/** The machine QEMU runs on: this one, or a remote host over SSH with its key pinned. */
export async function openValidationHost(t: HostTarget): Promise<ValidationHost> {
  if (!t.host) return new LocalHost()
  throw new HostError(`remote validation on ${t.host} is not available in this build`)
}
