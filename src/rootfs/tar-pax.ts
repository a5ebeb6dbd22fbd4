import {createRequire} from 'node:module'
import {dirname, join} from 'node:path'

import {BugError} from '../errors.js'

/**
 * tar-stream decodes and encodes PAX records as UTF-8 strings, which corrupts binary values such
 * as SCHILY.xattr.security.capability. This installs a byte-exact coding into tar-stream's own
 * headers module (the one its extract and pack use): SCHILY.xattr.* values are carried as
 * "binary strings" (latin1, one char per byte) and written back byte for byte; every other
 * record stays UTF-8. Use xattrValue()/xattrString() to convert.
 */

export const XATTR_PREFIX = 'SCHILY.xattr.'

interface HeadersModule {
  decodePax(buf: Buffer): Record<string, string>
  encodePax(opts: {name?: string; linkname?: string; pax?: Record<string, string>}): Buffer
  __cvmBinaryPax?: boolean
}

const require = createRequire(import.meta.url)
// tar-stream's package "exports" hides headers.js; an absolute path reaches the same module instance.
const headersPath = join(dirname(require.resolve('tar-stream')), 'headers.js')
const headers = require(headersPath) as HeadersModule

function isBinaryKey(key: string): boolean {
  return key.startsWith(XATTR_PREFIX)
}

function decodePax(buf: Buffer): Record<string, string> {
  const out: Record<string, string> = {}
  while (buf.length) {
    const space = buf.indexOf(0x20)
    if (space <= 0) return out
    const len = Number.parseInt(buf.subarray(0, space).toString('latin1'), 10)
    if (!len || len > buf.length) return out
    const record = buf.subarray(space + 1, len - 1)
    const eq = record.indexOf(0x3d)
    if (eq < 0) return out
    const key = record.subarray(0, eq).toString('utf8')
    out[key] = record.subarray(eq + 1).toString(isBinaryKey(key) ? 'latin1' : 'utf8')
    buf = buf.subarray(len)
  }
  return out
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')])
  let digits = String(body.length).length
  if (body.length + digits >= 10 ** digits) digits++
  return Buffer.concat([Buffer.from(String(body.length + digits)), body])
}

function encodePax(opts: {name?: string; linkname?: string; pax?: Record<string, string>}): Buffer {
  const records: Buffer[] = []
  if (opts.name) records.push(paxRecord('path', Buffer.from(opts.name, 'utf8')))
  if (opts.linkname) records.push(paxRecord('linkpath', Buffer.from(opts.linkname, 'utf8')))
  for (const [key, value] of Object.entries(opts.pax ?? {})) {
    if (key === 'path' || key === 'linkpath') continue
    records.push(paxRecord(key, Buffer.from(value, isBinaryKey(key) ? 'latin1' : 'utf8')))
  }
  return Buffer.concat(records)
}

if (typeof headers.decodePax !== 'function' || typeof headers.encodePax !== 'function') {
  throw new BugError(`tar-stream changed: ${headersPath} has no decodePax/encodePax; cvm-image cannot carry binary xattrs safely`)
}
if (!headers.__cvmBinaryPax) {
  headers.decodePax = decodePax
  headers.encodePax = encodePax
  headers.__cvmBinaryPax = true
}

/** The bytes of an xattr value as decoded by the patched tar-stream. */
export function xattrValue(binaryString: string): Buffer {
  return Buffer.from(binaryString, 'latin1')
}

/** An xattr value in the form the patched tar-stream writes byte for byte. */
export function xattrString(value: Buffer): string {
  return value.toString('latin1')
}

export function installBinaryPax(): void {
  // importing this module installs the coding; this makes the dependency explicit at call sites
}
