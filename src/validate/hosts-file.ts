import {readFileSync} from 'node:fs'

import {InputError} from '../errors.js'
import {checkFingerprintSyntax} from '../remote/host-key.js'
import {parseSshAddress} from '../remote/ssh.js'

/** A validation host of a pool: its SSH address as written, and its pinned host key. */
export interface PoolHost {
  /** user@host[:port] */
  address: string
  /** SHA256:<base64>, as ssh-keygen -lf prints it */
  hostKey: string
}

/** A hosts file read at entry: the file, and its hosts in its order. */
export interface HostsFile {
  file: string
  hosts: PoolHost[]
}

/**
 * Reads a hosts file (docs/host-pool.md "The hosts file"): one host a line, `user@host[:port]
 * SHA256:<fingerprint>`; blank lines and lines starting with # are skipped. Anything else is refused
 * naming the file and the line (exit 2), before any work.
 */
export function readHostsFile(file: string): HostsFile {
  const text = readFileSync(file, 'utf8')
  const hosts: PoolHost[] = []
  const seen = new Map<string, number>()
  const refuse = (line: number, what: string, hint: string) => new InputError(`${file}:${line}: ${what}`, {hint})
  const FORMAT = 'write each host as `user@host[:port] SHA256:<fingerprint>` (the fingerprint as `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints it on the host)'
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const n = i + 1
    const fields = line.split(/\s+/)
    if (fields.length !== 2) throw refuse(n, `${fields.length === 1 ? 'a host without its pinned host key' : `${fields.length} fields where two belong`}: ${JSON.stringify(line)}`, FORMAT)
    const [address, hostKey] = fields
    let port: number
    try {
      port = parseSshAddress(address).port
    } catch {
      throw refuse(n, `${JSON.stringify(address)} is not an SSH address`, FORMAT)
    }
    if (port < 1 || port > 65535) throw refuse(n, `${JSON.stringify(address)} has no TCP port ${port}`, FORMAT)
    try {
      checkFingerprintSyntax(hostKey)
    } catch {
      throw refuse(n, `${JSON.stringify(hostKey)} is not a SHA256 host key fingerprint`, FORMAT)
    }
    const twice = seen.get(address)
    if (twice !== undefined) throw refuse(n, `${address} is listed already on line ${twice}`, 'list each host once: it takes one boot at a time')
    seen.set(address, n)
    hosts.push({address, hostKey})
  }
  if (hosts.length === 0) throw new InputError(`${file} lists no host`, {hint: FORMAT})
  return {file, hosts}
}
