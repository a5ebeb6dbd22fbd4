import {resolve} from 'node:path'

import {InputError} from '../errors.js'

/** Where releases go: a local directory, or a directory on an SFTP server. */
export type PublishTarget = {kind: 'dir'; path: string} | {kind: 'sftp'; user: string; host: string; port: number; path: string}

export const DEFAULT_TARGET = './out'

/**
 * Reads `dir:PATH`, a plain path, or `sftp://user@host[:port]/path`. The SFTP path is absolute;
 * `sftp://user@host/~/releases` is relative to the login directory.
 */
export function parseTarget(spec: string): PublishTarget {
  if (spec.startsWith('sftp://')) {
    const m = /^sftp:\/\/([^@/\s]+)@(\[[^\]]+\]|[^@/:\s]+)(?::(\d{1,5}))?(\/.*)$/.exec(spec)
    if (!m || m[4] === '/') {
      throw new InputError(`publish target ${JSON.stringify(spec)} is not an SFTP URL with a directory`, {hint: 'write sftp://user@host[:port]/absolute/dir or sftp://user@host/~/dir'})
    }
    const path = m[4].startsWith('/~/') ? m[4].slice(3) : m[4]
    return {kind: 'sftp', user: m[1], host: m[2].replace(/^\[|\]$/g, ''), port: m[3] ? Number(m[3]) : 22, path: path.replace(/\/+$/, '')}
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec)) {
    throw new InputError(`publish target ${JSON.stringify(spec)}: only directories and sftp:// are supported`, {hint: 'use dir:PATH, a plain path, or sftp://user@host[:port]/path'})
  }
  const path = spec.startsWith('dir:') ? spec.slice(4) : spec
  if (!path) throw new InputError('publish target dir: needs a path', {hint: 'e.g. --to dir:./out'})
  return {kind: 'dir', path: resolve(path)}
}

export function describeTarget(t: PublishTarget): string {
  return t.kind === 'dir' ? `dir:${t.path}` : `sftp://${t.user}@${t.host}${t.port === 22 ? '' : `:${t.port}`}/${t.path.startsWith('/') ? t.path.slice(1) : `~/${t.path}`}`
}
