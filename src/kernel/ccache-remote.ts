import {inspect} from 'node:util'

import {InputError} from '../errors.js'

/**
 * A ccache remote storage (ccache's `remote_storage`, 4.4 and later): a Redis server or an HTTP
 * server that a team's builds share compiled objects through. It holds a URL that may carry a
 * password, so the URL leaves it only through storage(), into a child's environment
 * (CCACHE_REMOTE_STORAGE: /proc/PID/environ is readable by its owner only); printed, logged or
 * serialized, it is shownAs, with the credential replaced by ***.
 */
export class CcacheRemote {
  readonly #url: string
  /** the URL with any user and password replaced by ***: what logs, errors and JSON show */
  readonly shownAs: string

  constructor(url: string, shownAs: string) {
    this.#url = url
    this.shownAs = shownAs
  }

  /** the value for ccache's remote_storage: for a child's environment only, never a log or argv */
  storage(): string {
    return this.#url
  }

  toString(): string {
    return this.shownAs
  }

  toJSON(): string {
    return this.shownAs
  }

  [inspect.custom](): string {
    return `CcacheRemote(${this.shownAs})`
  }
}

const SCHEMES = ['redis:', 'redis+unix:', 'http:']
// ccache's attributes: key or key=value, percent-encoded (connect-timeout=50, read-only, shards=...)
const ATTRIBUTE = /^[a-z][a-z0-9-]*(=[^|\s]*)?$/

/** The URL with its user info (user, password, or redis's bare password) replaced by ***. */
function redacted(raw: string): string {
  // up to the last @ before any attribute: a password holding an unencoded / or @ is hidden whole too
  return raw.replace(/^([a-z+]+:\/\/)[^|]*@/i, '$1***@')
}

/**
 * Parses --ccache-remote: one redis://, redis+unix: or http:// URL, optionally followed by ccache's
 * |attributes. Refused here, because ccache would fail or silently skip the store on every compile:
 * another scheme (ccache 4.7 fails each compile on an unknown one, https:// included), a missing host,
 * spaces (ccache would read several stores).
 */
export function parseCcacheRemote(raw: string): CcacheRemote {
  const shown = JSON.stringify(redacted(raw))
  const refuse = (why: string, hint: string): never => {
    throw new InputError(`${shown} is not a ccache remote storage URL: ${why}`, {hint})
  }
  const forms = 'give redis://[PASSWORD@]HOST[:PORT][/DB], redis+unix:/PATH/TO/SOCKET or http://HOST[:PORT][/PATH]'
  if (/\s/.test(raw)) refuse('it holds a space (ccache would read it as several stores)', forms)
  const [url, ...attributes] = raw.split('|')
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return refuse('it is not a URL', forms)
  }
  if (u.protocol === 'https:') {
    refuse('ccache 4.7 has no HTTPS (its http backend is plain HTTP, and ccache fails every compile on an https:// store)', 'use http:// on a trusted network, or Redis (redis:// or redis+unix:)')
  }
  if (!SCHEMES.includes(u.protocol)) refuse(`the scheme ${u.protocol.replace(/:$/, '')} is not one ccache reads`, forms)
  if (u.protocol === 'redis+unix:' ? !u.pathname || u.pathname === '/' : !u.hostname) {
    refuse(u.protocol === 'redis+unix:' ? 'it names no socket' : 'it names no host', forms)
  }
  for (const a of attributes) if (!ATTRIBUTE.test(a)) refuse(`${JSON.stringify(a)} is not a ccache attribute (key or key=value)`, 'write attributes as |connect-timeout=500|read-only, as `man ccache` (REMOTE STORAGE BACKENDS) shows')
  // redis-cli's form redis://:PASSWORD@host: ccache 4.7.5 sends no AUTH for it (every read fails
  // NOAUTH, silently) and logs it unredacted, so it gets ccache's own form, redis://PASSWORD@host
  const storage = /^redis(\+unix)?:\/\/:[^@/]*@/i.test(raw) ? raw.replace(/^([a-z+]+:\/\/):/i, '$1') : raw
  return new CcacheRemote(storage, redacted(raw))
}
