import {createHash, createHmac} from 'node:crypto'
import {existsSync, readFileSync} from 'node:fs'
import {homedir} from 'node:os'
import {join} from 'node:path'

import {HostError, InputError} from '../errors.js'

/** How a host's key is pinned: a SHA256 fingerprint, or a known_hosts file. */
export interface HostKeyPin {
  /** SHA256:<base64, no padding>, as `ssh-keygen -lf` prints it */
  hostKey?: string
  /** an OpenSSH known_hosts file (plain or hashed host names); default ~/.ssh/known_hosts */
  knownHostsFile?: string
}

/** The fingerprint OpenSSH shows for a key blob (the base64 part of a public key line). */
export function fingerprint(keyBlob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')
}

/** The fingerprint of an OpenSSH public key line (`<type> <base64> [comment]`). */
export function fingerprintOfLine(line: string): string {
  return fingerprint(Buffer.from(line.trim().split(/\s+/)[1] ?? '', 'base64'))
}

const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/

export function checkFingerprintSyntax(fp: string): string {
  if (!FINGERPRINT.test(fp)) {
    throw new InputError(`host key fingerprint ${JSON.stringify(fp)} is not a SHA256 fingerprint`, {
      hint: 'give it as `ssh-keygen -lf <host key>.pub` prints it, e.g. SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s',
    })
  }
  return fp
}

interface KnownHostEntry {
  marker?: '@revoked' | '@cert-authority'
  patterns: string
  keyType: string
  keyBlob: Buffer
  line: number
}

function parseKnownHosts(text: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = []
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim()
    if (!line || line.startsWith('#')) return
    const parts = line.split(/\s+/)
    const marker = parts[0] === '@revoked' || parts[0] === '@cert-authority' ? (parts.shift() as KnownHostEntry['marker']) : undefined
    if (parts.length < 3) return
    entries.push({marker, patterns: parts[0], keyType: parts[1], keyBlob: Buffer.from(parts[2], 'base64'), line: i + 1})
  })
  return entries
}

/** The name OpenSSH files a host under: host for port 22, [host]:port otherwise. */
function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`
}

function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp('^' + pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$', 'i')
  return re.test(name)
}

function entryMatchesHost(patterns: string, name: string): boolean {
  // hashed entry: |1|salt|hmac-sha1(salt, name)
  if (patterns.startsWith('|1|')) {
    const [, , salt, hash] = patterns.split('|')
    const mac = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64')
    return mac === hash
  }
  let matched = false
  for (const p of patterns.split(',')) {
    if (p.startsWith('!')) {
      if (globMatch(p.slice(1), name)) return false
    } else if (globMatch(p, name)) matched = true
  }
  return matched
}

/** The host key algorithms that verify a known_hosts key type, in OpenSSH's order of preference. */
const ALGORITHMS_OF_KEY_TYPE: Record<string, string[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
  'ssh-dss': ['ssh-dss'],
}

/** The key type a public key blob names (its first SSH string). */
export function keyTypeOf(keyBlob: Buffer): string {
  const len = keyBlob.length >= 4 ? keyBlob.readUInt32BE(0) : 0
  return keyBlob.subarray(4, 4 + len).toString('latin1')
}

function knownHostsFileOf(pin: HostKeyPin): string {
  return pin.knownHostsFile ?? join(homedir(), '.ssh', 'known_hosts')
}

function entriesFor(host: string, port: number, file: string): KnownHostEntry[] {
  const entries = existsSync(file) ? parseKnownHosts(readFileSync(file, 'utf8')) : []
  return entries.filter((e) => entryMatchesHost(e.patterns, knownHostsName(host, port)))
}

/**
 * The host key algorithms to ask the server for, as OpenSSH does: those of the known_hosts keys for
 * the host, so a host known by its ECDSA key presents that key and not the ed25519 one it prefers.
 * undefined (the client's defaults) for a fingerprint pin or a host with no usable entry.
 * A host vouched for only by an @cert-authority line is refused here: host certificates are not checked.
 */
export function hostKeyAlgorithms(host: string, port: number, pin: HostKeyPin): string[] | undefined {
  if (pin.hostKey) return undefined
  const file = knownHostsFileOf(pin)
  const forHost = entriesFor(host, port, file)
  const plain = forHost.filter((e) => !e.marker)
  const ca = forHost.find((e) => e.marker === '@cert-authority')
  if (plain.length === 0 && ca) {
    throw new HostError(`${file}:${ca.line} vouches for ${knownHostsName(host, port)} with @cert-authority, and cvm-image does not check host certificates: refusing to connect`, {
      hint: `add the host's own key for ${knownHostsName(host, port)} to ${file} (check it on the host: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), or pin it with --host-key SHA256:...`,
    })
  }
  const algorithms = [...new Set(plain.flatMap((e) => ALGORITHMS_OF_KEY_TYPE[e.keyType] ?? []))]
  return algorithms.length > 0 ? algorithms : undefined
}

/**
 * Decides whether a presented host key is the pinned one. Returns undefined to accept, or the
 * HostError to raise: an unknown key and a changed key are both refused, naming the key seen.
 */
export function checkHostKey(host: string, port: number, keyBlob: Buffer, pin: HostKeyPin): HostError | undefined {
  const seen = fingerprint(keyBlob)
  const where = `${host}:${port}`
  const pinHint = (file: string) =>
    `if ${seen} is the host's key (check it on the host: ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), pin it with --host-key ${seen}, or add the host's key to ${file}`
  if (pin.hostKey) {
    if (seen === pin.hostKey) return undefined
    return new HostError(`host key of ${where} is ${seen}, not the pinned ${pin.hostKey}: refusing to connect`, {
      hint: 'the host key changed or someone is in the middle; confirm the new key on the host itself before you pin it',
    })
  }
  const file = knownHostsFileOf(pin)
  const name = knownHostsName(host, port)
  const forHost = entriesFor(host, port, file).filter((e) => e.marker !== '@cert-authority')
  const revoked = forHost.find((e) => e.marker === '@revoked' && e.keyBlob.equals(keyBlob))
  if (revoked) return new HostError(`host key ${seen} of ${where} is marked @revoked in ${file}:${revoked.line}: refusing to connect`)
  if (forHost.some((e) => !e.marker && e.keyBlob.equals(keyBlob))) return undefined
  const known = forHost.filter((e) => !e.marker)
  // only a key of the type presented can have changed; the algorithms asked for make the server present one
  const sameType = known.filter((e) => e.keyType === keyTypeOf(keyBlob))
  if (known.length > 0 && sameType.length === 0) {
    return new HostError(`host key of ${where} is a ${keyTypeOf(keyBlob)} key (${seen}), and ${file} holds only ${[...new Set(known.map((e) => e.keyType))].join(', ')} keys for ${name}: refusing to connect`, {
      hint: pinHint(file),
    })
  }
  if (sameType.length > 0) {
    return new HostError(`host key of ${where} CHANGED: it presents ${seen}, ${file}:${sameType[0].line} holds ${fingerprint(sameType[0].keyBlob)}: refusing to connect`, {
      hint: `the host was reinstalled or someone is in the middle; confirm on the host, then replace the line for ${name} in ${file}`,
    })
  }
  return new HostError(`host key of ${where} is unknown (it presents ${seen}; no entry for ${name} in ${existsSync(file) ? file : `${file}, which does not exist`}): refusing to connect`, {
    hint: pinHint(file),
  })
}

/** Reads the one-flag form the CLI takes: a SHA256:... fingerprint, or else the path of a known_hosts file. */
export function hostKeyPinFromFlag(value: string | undefined): HostKeyPin {
  if (!value) return {}
  return value.startsWith('SHA256:') ? {hostKey: checkFingerprintSyntax(value)} : {knownHostsFile: value}
}
