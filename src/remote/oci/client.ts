import {createHash} from 'node:crypto'
import {createReadStream, createWriteStream, readFileSync} from 'node:fs'
import {unlink} from 'node:fs/promises'
import type {IncomingMessage} from 'node:http'
import {request} from 'node:https'
import {Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {StageError} from '../../errors.js'
import type {RegistryCredentials} from './credentials.js'
import type {OciRepository} from './reference.js'

/** A registry that could not be reached, refused us, or answered what the protocol does not allow. */
export class RegistryError extends StageError {
  /** the registry could not be reached or did not answer in time (not: it answered no) */
  transport = false
}

function transportError(message: string, opts: {hint: string; cause?: unknown}): RegistryError {
  const e = new RegistryError(message, opts)
  e.transport = true
  return e
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

/** An OCI content descriptor (image-spec descriptor.md). */
export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  annotations?: Record<string, string>
}

/** An OCI image manifest carrying an artifact (image-spec manifest.md, "artifactType"). */
export interface OciManifest {
  schemaVersion: 2
  mediaType: typeof OCI_MANIFEST
  artifactType?: string
  config: Descriptor
  layers: Descriptor[]
  annotations?: Record<string, string>
}

export interface OciClientOptions {
  /** PEM CA bundle the registry's certificate must chain to (besides Node's own roots) */
  caFile?: string
  credentials?: RegistryCredentials
  /** how long a request may go without a byte either way */
  timeoutMs?: number
}

type Body = Buffer | {file: string; size: number}

const DIGEST = /^sha256:[a-f0-9]{64}$/
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/
/** a manifest larger than this is not one of ours, and is not read into memory */
const MAX_MANIFEST_BYTES = 4 << 20
const MAX_REDIRECTS = 3

export function digestOf(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

/**
 * A client of the OCI distribution protocol (distribution-spec spec.md) for one repository: blobs by
 * digest, manifests by tag or digest, Basic or Bearer auth as the registry's challenge asks, TLS with
 * a CA of the user's. Every byte read is checked against the digest it was asked for; no message
 * holds a credential.
 */
export class OciClient {
  private readonly ca?: Buffer
  private readonly timeoutMs: number
  /** the registry asked for Basic: every request carries it from then on */
  private basic = false
  private readonly tokens = new Map<string, string>()

  constructor(
    readonly repo: OciRepository,
    private readonly opts: OciClientOptions = {},
  ) {
    this.ca = opts.caFile ? readFileSync(opts.caFile) : undefined
    this.timeoutMs = opts.timeoutMs ?? 30_000
  }

  /** GET /v2/: the registry is there, speaks the protocol and takes our credentials. */
  async ping(): Promise<void> {
    const res = await this.call('GET', '/v2/', {scope: 'pull'})
    await this.expect(res, [200], 'GET /v2/')
    res.resume()
  }

  async hasBlob(digest: string): Promise<boolean> {
    checkDigest(digest)
    const res = await this.call('HEAD', this.path(`blobs/${digest}`), {scope: 'pull'})
    if (isMiss(res)) {
      res.resume()
      return false
    }
    await this.expect(res, [200], `HEAD blob ${digest}`)
    res.resume()
    return true
  }

  /**
   * Streams a blob into `file` (created, never overwritten), hashing as it goes; bytes beyond `size`
   * or a digest that does not match remove the file and throw. Only a verified file is left behind.
   */
  async fetchBlob(digest: string, size: number, file: string): Promise<void> {
    checkDigest(digest)
    const res = await this.call('GET', this.path(`blobs/${digest}`), {scope: 'pull'})
    await this.expect(res, [200], `GET blob ${digest}`)
    const hash = createHash('sha256')
    let seen = 0
    const where = `${this.repo.display} blob ${digest}`
    const check = new Transform({
      transform(chunk: Buffer, _enc, done) {
        seen += chunk.length
        if (seen > size) return done(new RegistryError(`${where} is longer than the ${size} bytes its manifest gives: refused`, {hint: 'the registry serves other bytes under this digest; remove the entry from the registry'}))
        hash.update(chunk)
        done(null, chunk)
      },
    })
    try {
      await pipeline(res, check, createWriteStream(file, {flags: 'wx', mode: 0o600}))
      const got = `sha256:${hash.digest('hex')}`
      if (seen !== size) throw new RegistryError(`${where} ended after ${seen} of its ${size} bytes`, {hint: 'the transfer was cut off; the next build tries again'})
      if (got !== digest) throw new RegistryError(`${where}: its bytes hash to ${got}, not the digest asked for: refused`, {hint: 'the registry serves other bytes under this digest; remove the entry from the registry'})
    } catch (e) {
      await unlink(file).catch(() => {})
      if (e instanceof RegistryError) throw e
      throw new RegistryError(`${where} could not be read: ${(e as Error).message}`, {cause: e, hint: 'the transfer failed; the next build tries again'})
    }
  }

  /** A small blob (a config, a signature) into memory, verified against its digest. */
  async readBlob(digest: string, maxBytes: number): Promise<Buffer> {
    checkDigest(digest)
    const res = await this.call('GET', this.path(`blobs/${digest}`), {scope: 'pull'})
    await this.expect(res, [200], `GET blob ${digest}`)
    const data = await readAll(res, maxBytes, `${this.repo.display} blob ${digest}`)
    const got = digestOf(data)
    if (got !== digest) throw new RegistryError(`${this.repo.display} blob ${digest}: its bytes hash to ${got}: refused`, {hint: 'the registry serves other bytes under this digest; remove the entry from the registry'})
    return data
  }

  /** Uploads a blob unless the repository has it: POST for a session, then one monolithic PUT ?digest=. */
  async pushBlob(digest: string, body: Body): Promise<void> {
    checkDigest(digest)
    if (await this.hasBlob(digest)) return
    const start = await this.call('POST', this.path('blobs/uploads/'), {scope: 'pull,push', headers: {'content-length': '0'}})
    await this.expect(start, [202], 'POST blob upload')
    start.resume()
    const location = start.headers.location
    if (!location) throw new RegistryError(`${this.repo.display} started a blob upload but gave no Location`, {hint: 'the registry does not follow the distribution protocol'})
    const url = new URL(location, this.base())
    url.searchParams.set('digest', digest)
    const size = Buffer.isBuffer(body) ? body.length : body.size
    const put = await this.call('PUT', url.toString(), {scope: 'pull,push', body, headers: {'content-type': 'application/octet-stream', 'content-length': String(size)}})
    await this.expect(put, [201], `PUT blob ${digest}`)
    put.resume()
  }

  /** PUT a manifest under a tag (or its digest); returns its digest. */
  async putManifest(reference: string, manifest: Buffer): Promise<string> {
    checkReference(reference)
    const res = await this.call('PUT', this.path(`manifests/${reference}`), {
      scope: 'pull,push',
      body: manifest,
      headers: {'content-type': OCI_MANIFEST, 'content-length': String(manifest.length)},
    })
    await this.expect(res, [201], `PUT manifest ${reference}`)
    res.resume()
    return digestOf(manifest)
  }

  /** A manifest by tag or digest, its bytes and digest (checked when asked by digest); undefined when the registry has none. */
  async getManifest(reference: string): Promise<{bytes: Buffer; digest: string; manifest: OciManifest} | undefined> {
    checkReference(reference)
    const res = await this.call('GET', this.path(`manifests/${reference}`), {scope: 'pull', headers: {accept: OCI_MANIFEST}})
    if (isMiss(res)) {
      res.resume()
      return undefined
    }
    await this.expect(res, [200], `GET manifest ${reference}`)
    const where = `${this.repo.display} manifest ${reference}`
    const bytes = await readAll(res, MAX_MANIFEST_BYTES, where)
    const digest = digestOf(bytes)
    if (DIGEST.test(reference) && digest !== reference) throw new RegistryError(`${where}: its bytes hash to ${digest}: refused`, {hint: 'the registry serves another manifest under this digest'})
    let manifest: OciManifest
    try {
      manifest = JSON.parse(bytes.toString('utf8')) as OciManifest
    } catch {
      throw new RegistryError(`${where} is not JSON (${describeType(res)})`, {hint: 'is this an OCI registry? a proxy or login page may have answered'})
    }
    if (manifest?.schemaVersion !== 2 || manifest.mediaType !== OCI_MANIFEST || !manifest.config || !Array.isArray(manifest.layers)) {
      throw new RegistryError(`${where} is not an OCI image manifest (mediaType ${JSON.stringify(manifest?.mediaType)})`, {hint: 'the tag holds something other than a cvm-image cache entry'})
    }
    for (const d of [manifest.config, ...manifest.layers]) {
      if (typeof d?.digest !== 'string' || !DIGEST.test(d.digest) || !Number.isSafeInteger(d.size) || d.size < 0) {
        throw new RegistryError(`${where} has a descriptor without a sha256 digest and size`, {hint: 'the tag holds something other than a cvm-image cache entry'})
      }
    }
    return {bytes, digest, manifest}
  }

  private base(): string {
    return `https://${this.repo.host}`
  }

  private path(rest: string): string {
    return `/v2/${this.repo.repository}/${rest}`
  }

  /** One request with the auth the registry asked for; a 401 learns the challenge and retries once. */
  private async call(method: string, pathOrUrl: string, opts: {scope: 'pull' | 'pull,push'; body?: Body; headers?: Record<string, string>}): Promise<IncomingMessage> {
    const url = new URL(pathOrUrl, this.base())
    const scope = `repository:${this.repo.repository}:${opts.scope}`
    const attempt = () => this.send(method, url, {...opts.headers, ...this.authHeader(scope)}, opts.body)
    // what this request carried: requests run at once, and another may have learnt the challenge meanwhile
    const sent = this.authHeader(scope).authorization ?? ''
    const res = await attempt()
    if (res.statusCode !== 401) return res
    res.resume()
    const challenge = String(res.headers['www-authenticate'] ?? '')
    const creds = this.opts.credentials
    if (/^basic\b/i.test(challenge)) {
      if (!creds) throw this.needsCredentials()
      if (sent.startsWith('Basic ')) throw this.refusedCredentials()
      this.basic = true
    } else if (/^bearer\b/i.test(challenge)) {
      // a token sent and refused may have expired: one new token, then the answer stands
      this.tokens.set(scope, await this.token(challenge, scope))
    } else {
      throw new RegistryError(`${this.repo.display} asks for authentication this client does not speak (${challenge.split(/\s/)[0] || 'no WWW-Authenticate'})`, {hint: 'the registry must offer Basic or Bearer auth'})
    }
    const again = await attempt()
    if (again.statusCode === 401) {
      again.resume()
      throw creds ? this.refusedCredentials() : this.needsCredentials()
    }
    return again
  }

  private authHeader(scope: string): Record<string, string> {
    const token = this.tokens.get(scope)
    if (token) return {authorization: `Bearer ${token}`}
    const creds = this.opts.credentials
    if (this.basic && creds) return {authorization: `Basic ${Buffer.from(`${creds.user}:${creds.password}`).toString('base64')}`}
    return {}
  }

  /** A Bearer token from the challenge's realm (distribution's token auth spec), with our credentials when we have them. */
  private async token(challenge: string, scope: string): Promise<string> {
    const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1].toLowerCase(), m[2]]))
    if (!params.realm) throw new RegistryError(`${this.repo.display} asks for a Bearer token but names no realm`, {hint: 'the registry\'s token auth is misconfigured'})
    const realm = new URL(params.realm)
    if (params.service) realm.searchParams.set('service', params.service)
    realm.searchParams.set('scope', params.scope ?? scope)
    const creds = this.opts.credentials
    const headers: Record<string, string> = creds ? {authorization: `Basic ${Buffer.from(`${creds.user}:${creds.password}`).toString('base64')}`} : {}
    const res = await this.send('GET', realm, headers)
    if (res.statusCode === 401 || res.statusCode === 403) {
      res.resume()
      throw creds ? this.refusedCredentials() : this.needsCredentials()
    }
    await this.expect(res, [200], `GET token from ${realm.host}`)
    const body = await readAll(res, 1 << 20, `token from ${realm.host}`)
    try {
      const json = JSON.parse(body.toString('utf8')) as {token?: string; access_token?: string}
      const token = json.token ?? json.access_token
      if (typeof token === 'string' && token !== '') return token
    } catch {
      // reported below
    }
    throw new RegistryError(`the token service ${realm.host} of ${this.repo.display} answered no token (${describeType(res)})`, {hint: 'the registry\'s token auth is misconfigured'})
  }

  private needsCredentials(): RegistryError {
    return new RegistryError(`${this.repo.display} needs credentials, and none are given for ${this.repo.host}`, {
      hint: `log in (docker login ${this.repo.host}, podman login ${this.repo.host}), or point REGISTRY_AUTH_FILE at a file with "auths": {"${this.repo.host}": {"auth": "<base64 of user:password>"}}`,
    })
  }

  private refusedCredentials(): RegistryError {
    const c = this.opts.credentials!
    return new RegistryError(`${this.repo.display} refused the credentials of user ${c.user} (from ${c.source})`, {hint: `check the password or token for ${this.repo.host} in ${c.source}, or log in again`})
  }

  /** One HTTPS exchange, following a redirect (a blob in object storage) without our Authorization to another host. */
  private send(method: string, url: URL, headers: Record<string, string>, body?: Body, hops = 0): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = request(url, {method, headers: {'user-agent': 'cvm-image', ...headers}, ca: this.ca ? [this.ca] : undefined}, (res) => {
        const to = res.headers.location
        if (to && [301, 302, 303, 307, 308].includes(res.statusCode ?? 0) && (method === 'GET' || method === 'HEAD')) {
          res.resume()
          if (hops >= MAX_REDIRECTS) return reject(new RegistryError(`${this.repo.display} redirected ${method} ${url.pathname} more than ${MAX_REDIRECTS} times`, {hint: 'the registry or its storage is misconfigured'}))
          const next = new URL(to, url)
          const keep = next.host === url.host ? headers : Object.fromEntries(Object.entries(headers).filter(([k]) => k !== 'authorization'))
          return this.send(method, next, keep, undefined, hops + 1).then(resolve, reject)
        }
        res.setTimeout(this.timeoutMs, () => res.destroy(this.timeout(method, url)))
        resolve(res)
      })
      req.setTimeout(this.timeoutMs, () => req.destroy(this.timeout(method, url)))
      req.on('error', (e) => reject(e instanceof RegistryError ? e : transportError(`${this.repo.display}: ${method} ${url.pathname} failed: ${(e as Error).message}`, {cause: e, hint: tlsHint(e, this.opts.caFile)})))
      if (body === undefined) req.end()
      else if (Buffer.isBuffer(body)) req.end(body)
      else createReadStream(body.file).on('error', (e) => req.destroy(e)).pipe(req)
    })
  }

  private timeout(method: string, url: URL): RegistryError {
    return transportError(`${this.repo.display}: ${method} ${url.pathname} had no answer for ${this.timeoutMs / 1000} s`, {hint: 'the registry is slow or unreachable; the next build tries again'})
  }

  /** Throws unless the status is one expected, naming the registry's own error code and message when it gave them. */
  private async expect(res: IncomingMessage, ok: number[], what: string): Promise<void> {
    if (ok.includes(res.statusCode ?? 0)) return
    const body = await readAll(res, 64 << 10, what).catch(() => Buffer.alloc(0))
    let detail = describeType(res)
    try {
      const errs = (JSON.parse(body.toString('utf8')) as {errors?: {code?: string; message?: string}[]}).errors
      if (Array.isArray(errs) && errs.length > 0) detail = errs.map((e) => `${e.code ?? '?'}: ${e.message ?? ''}`).join('; ')
    } catch {
      // not the registry's JSON error form: the content type says what it was
    }
    const html = /text\/html/i.test(String(res.headers['content-type'] ?? ''))
    throw new RegistryError(`${this.repo.display} answered ${res.statusCode} to ${what} (${detail})`, {
      hint: html ? 'an HTML page answered: is this address an OCI registry, and not a proxy or login page?' : 'see the registry\'s logs; the next build tries again',
    })
  }
}

/** A 404 from the registry itself; an HTML 404 is a web server where a registry should be, which expect() names. */
function isMiss(res: IncomingMessage): boolean {
  return res.statusCode === 404 && !/text\/html/i.test(String(res.headers['content-type'] ?? ''))
}

function describeType(res: IncomingMessage): string {
  return `content-type ${res.headers['content-type'] ?? 'none'}`
}

function tlsHint(e: unknown, caFile?: string): string {
  const code = (e as NodeJS.ErrnoException).code ?? ''
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) return caFile ? `the registry's certificate does not chain to ${caFile}, or names another host` : 'give the CA file that signed the registry\'s certificate'
  return 'is the registry up and reachable? the next build tries again'
}

function checkDigest(digest: string): void {
  if (!DIGEST.test(digest)) throw new RegistryError(`${JSON.stringify(digest)} is not a sha256 digest`, {hint: 'only sha256:<64 hex> digests are read or written'})
}

function checkReference(ref: string): void {
  if (!DIGEST.test(ref) && !TAG.test(ref)) throw new RegistryError(`${JSON.stringify(ref)} is neither a tag nor a sha256 digest`, {hint: 'a tag is up to 128 of A-Z a-z 0-9 _ . -'})
}

async function readAll(res: IncomingMessage, max: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = []
  let n = 0
  for await (const chunk of res) {
    n += (chunk as Buffer).length
    if (n > max) {
      res.destroy()
      throw new RegistryError(`${what} is larger than ${max} bytes: refused`, {hint: 'the registry answered something other than what was asked for'})
    }
    parts.push(chunk as Buffer)
  }
  return Buffer.concat(parts)
}
