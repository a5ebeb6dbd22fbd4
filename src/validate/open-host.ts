import {connect, type HostKeyPin} from '../remote/ssh.js'
import {LocalHost, type ValidationHost} from './host.js'
import {RemoteHost} from './remote-host.js'

/** The machine to validate on, and how to trust it: the pin is a SHA256 fingerprint or a known_hosts file (default ~/.ssh/known_hosts). */
export interface HostTarget extends HostKeyPin {
  /** user@host[:port] of a remote validation host; unset: this machine */
  host?: string
  /** private key file; default: the SSH agent */
  identity?: string
  /** a file whose first line is the identity's passphrase */
  identityPassphraseFile?: string
  signal?: AbortSignal
}

/**
 * The machine QEMU runs on: this one, or a remote host over SSH whose key is pinned (a fingerprint
 * or known_hosts); an unknown or changed key is refused before anything is sent.
 */
export async function openValidationHost(t: HostTarget): Promise<ValidationHost> {
  if (!t.host) return new LocalHost()
  const session = await connect(t.host, {hostKey: t.hostKey, knownHostsFile: t.knownHostsFile, privateKey: t.identity, passphraseFile: t.identityPassphraseFile, keepaliveInterval: 10_000, signal: t.signal})
  return new RemoteHost(session)
}
