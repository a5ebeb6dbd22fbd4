import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {createServer, type Server} from 'node:https'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {startRegistry, type TestRegistry} from '../../../test/helpers/registry.js'
import {OCI_MANIFEST, OciClient, digestOf, type OciManifest} from './client.js'
import {readRegistryCredentials} from './credentials.js'
import {parseOciReference} from './reference.js'

/** Where distribution's filesystem driver keeps a blob's bytes: the tests change them behind its back. */
function blobData(reg: TestRegistry, digest: string): string {
  const hex = digest.slice('sha256:'.length)
  return join(reg.dir, 'storage', 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data')
}

function manifestOf(config: Buffer, layers: Buffer[]): Buffer {
  const m: OciManifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: 'application/vnd.cvm-image.test.v1+json',
    config: {mediaType: 'application/vnd.cvm-image.test.config.v1+json', digest: digestOf(config), size: config.length},
    layers: layers.map((l) => ({mediaType: 'application/octet-stream', digest: digestOf(l), size: l.length})),
  }
  return Buffer.from(JSON.stringify(m))
}

describe('OCI distribution client against docker-registry 2.8', () => {
  let reg: TestRegistry
  let dir: string
  const client = (repo = 'team/cache', creds?: {user: string; password: string}) =>
    new OciClient(parseOciReference(`oci://${reg.host}/${repo}`, '--cache-to'), {
      caFile: reg.caFile,
      credentials: {...(creds ?? {user: reg.user, password: reg.password}), source: '/test/auth.json'},
      timeoutMs: 10_000,
    })

  beforeAll(async () => {
    reg = await startRegistry()
    dir = await mkdtemp(join(tmpdir(), 'cvm-oci-'))
  }, 60_000)
  afterAll(async () => {
    await reg?.stop()
    if (dir) await rm(dir, {recursive: true, force: true})
  })

  it('pushes blobs and a manifest under a tag, and reads them back by tag and by digest', async () => {
    const c = client()
    await c.ping()
    const config = Buffer.from('{"stage":"base"}')
    const layer = Buffer.alloc(300_000, 7)
    const layerFile = join(dir, 'layer.bin')
    await writeFile(layerFile, layer)
    await c.pushBlob(digestOf(config), config)
    await c.pushBlob(digestOf(layer), {file: layerFile, size: layer.length})
    // a second push of what the registry has is a HEAD, not an upload
    await c.pushBlob(digestOf(layer), {file: layerFile, size: layer.length})
    const bytes = manifestOf(config, [layer])
    const digest = await c.putManifest('base-abc', bytes)
    expect(await c.hasBlob(digestOf(layer))).toBe(true)
    expect(await c.hasBlob(digestOf(Buffer.from('absent')))).toBe(false)

    const byTag = await c.getManifest('base-abc')
    expect(byTag?.digest).toBe(digest)
    expect(byTag?.bytes.equals(bytes)).toBe(true)
    expect(byTag?.manifest.artifactType).toBe('application/vnd.cvm-image.test.v1+json')
    expect((await c.getManifest(digest))?.bytes.equals(bytes)).toBe(true)
    expect(await c.getManifest('no-such-tag')).toBeUndefined()

    expect((await c.readBlob(digestOf(config), 1024)).equals(config)).toBe(true)
    const out = join(dir, 'layer.out')
    await c.fetchBlob(digestOf(layer), layer.length, out)
    expect((await readFile(out)).equals(layer)).toBe(true)
  }, 60_000)

  it('refuses a blob whose bytes are not its digest, and leaves no file', async () => {
    const c = client()
    const good = Buffer.alloc(50_000, 1)
    await c.pushBlob(digestOf(good), good)
    // the registry does not re-hash on GET: corrupt its storage as a broken disk or a hostile mirror would
    const bad = Buffer.alloc(50_000, 2)
    writeFileSync(blobData(reg, digestOf(good)), bad)
    const out = join(dir, 'tampered.out')
    await expect(c.fetchBlob(digestOf(good), good.length, out)).rejects.toThrow(/its bytes hash to sha256:[0-9a-f]{64}, not the digest asked for: refused/)
    expect(existsSync(out)).toBe(false)
    await expect(c.readBlob(digestOf(good), 1 << 20)).rejects.toThrow(/refused/)
    // a blob longer than its descriptor says is cut off, not read to the end
    writeFileSync(blobData(reg, digestOf(good)), Buffer.concat([good, good]))
    await expect(c.fetchBlob(digestOf(good), good.length, out)).rejects.toThrow(/longer than the 50000 bytes/)
    expect(existsSync(out)).toBe(false)
  }, 60_000)

  it('says credentials are wrong without printing the password, and says when none are given', async () => {
    const wrong = client('team/cache', {user: reg.user, password: 'Sup3rSecretWrong'})
    const err = await wrong.ping().then(
      () => undefined,
      (e: Error & {hint?: string}) => e,
    )
    expect(err?.message).toMatch(new RegExp(`refused the credentials of user ${reg.user} \\(from /test/auth.json\\)`))
    expect(`${err?.message} ${err?.hint} ${err?.stack}`).not.toContain('Sup3rSecretWrong')
    expect(`${err?.message} ${err?.hint}`).not.toContain(Buffer.from(`${reg.user}:Sup3rSecretWrong`).toString('base64'))
    const anonymous = new OciClient(parseOciReference(`oci://${reg.host}/team/cache`, '--cache-from'), {caFile: reg.caFile})
    await expect(anonymous.ping()).rejects.toThrow(/needs credentials, and none are given/)
  }, 30_000)

  it('refuses a server whose certificate does not chain to the CA given', async () => {
    const noCa = new OciClient(parseOciReference(`oci://${reg.host}/team/cache`, '--cache-from'), {credentials: {user: reg.user, password: reg.password, source: 'x'}})
    await expect(noCa.ping()).rejects.toMatchObject({hint: /CA file that signed/})
  })

  it('names an HTML page for what it is', async () => {
    // a web server where a registry should be, with a certificate the CA trusts: a login page or a misrouted proxy
    const server: Server = createServer({cert: readFileSync(join(reg.dir, 'server.pem')), key: readFileSync(join(reg.dir, 'server.key'))}, (req, res) => {
      res.writeHead(req.url === '/v2/' || req.url!.endsWith('/manifests/ok') ? 200 : 404, {'content-type': 'text/html'})
      res.end('<html><body>Sign in</body></html>')
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as {port: number}).port
    try {
      const c = new OciClient(parseOciReference(`oci://127.0.0.1:${port}/team/cache`, '--cache-from'), {caFile: reg.caFile})
      await expect(c.getManifest('base-abc')).rejects.toMatchObject({message: /answered 404 to GET manifest base-abc \(content-type text\/html\)/, hint: /HTML page answered/})
      await expect(c.hasBlob(digestOf(Buffer.from('x')))).rejects.toMatchObject({hint: /HTML page answered/})
      await expect(c.getManifest('ok')).rejects.toThrow(/manifest ok is not JSON \(content-type text\/html\)/)
    } finally {
      server.close()
    }
  })

  it('gives up on a registry that accepts and never answers, within its timeout', async () => {
    const server: Server = createServer({cert: readFileSync(join(reg.dir, 'server.pem')), key: readFileSync(join(reg.dir, 'server.key'))}, () => {
      // never answers: a registry stuck behind a dead backend
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as {port: number}).port
    try {
      const c = new OciClient(parseOciReference(`oci://127.0.0.1:${port}/team/cache`, '--cache-from'), {caFile: reg.caFile, timeoutMs: 500})
      const started = Date.now()
      await expect(c.getManifest('base-abc')).rejects.toThrow(/GET \/v2\/team\/cache\/manifests\/base-abc had no answer for 0.5 s/)
      expect(Date.now() - started).toBeLessThan(5000)
    } finally {
      server.closeAllConnections()
      server.close()
    }
  })
})

describe('oci:// references', () => {
  it('takes host, port and a nested repository', () => {
    expect(parseOciReference('oci://registry.example.com:5000/team/cvm-cache', '--cache-to')).toEqual({host: 'registry.example.com:5000', repository: 'team/cvm-cache', display: 'oci://registry.example.com:5000/team/cvm-cache'})
  })
  it.each([
    ['https://r.example/x', /does not start with oci:\/\//],
    ['oci://r.example', /names no repository/],
    ['oci://r.example/Team', /not lowercase path components/],
    ['oci://r.example/team/cache:latest', /names a tag or digest/],
    ['oci://r exa/x', /not a host name/],
    ['oci://r.example:99999/x', /out of range/],
  ])('refuses %s', (text, why) => {
    expect(() => parseOciReference(text, '--cache-from')).toThrow(why)
    expect(() => parseOciReference(text, '--cache-from')).toThrow(expect.objectContaining({exitCode: 2}))
  })
})

describe('registry credentials', () => {
  it('reads auths from REGISTRY_AUTH_FILE before the docker config, the longest repository path winning', async () => {
    const d = await mkdtemp(join(tmpdir(), 'cvm-auth-'))
    try {
      const b64 = (s: string) => Buffer.from(s).toString('base64')
      await writeFile(join(d, 'auth.json'), JSON.stringify({auths: {'r.example': {auth: b64('podman:p1')}, 'r.example/team': {auth: b64('teamuser:p:2')}}}))
      await writeFile(join(d, 'config.json'), JSON.stringify({auths: {'https://r.example/v1/': {auth: b64('docker:p3')}, 'other.example': {auth: b64('o:p4')}}, credHelpers: {'ecr.example': 'ecr-login'}}))
      const env = {REGISTRY_AUTH_FILE: join(d, 'auth.json'), DOCKER_CONFIG: d}
      expect(readRegistryCredentials('r.example', 'team/cache', env)).toEqual({user: 'teamuser', password: 'p:2', source: join(d, 'auth.json')})
      expect(readRegistryCredentials('r.example', 'elsewhere', env)?.user).toBe('podman')
      expect(readRegistryCredentials('r.example', 'x', {DOCKER_CONFIG: d})?.user).toBe('docker')
      expect(readRegistryCredentials('other.example', 'x', env)?.password).toBe('p4')
      expect(readRegistryCredentials('none.example', 'x', env)).toBeUndefined()
      // the host's credHelpers entry is run, as docker runs it (src/remote/oci/credentials.test.ts); this one is not installed
      expect(() => readRegistryCredentials('ecr.example', 'x', {...env, PATH: d})).toThrow(/kept by docker-credential-ecr-login \(named by credHelpers\["ecr\.example"\] in .*config\.json\), which is not on PATH/)
    } finally {
      await rm(d, {recursive: true, force: true})
    }
  })
})

describe('Bearer tokens: docker-registry 2.8 with token auth', () => {
  let reg: TestRegistry
  beforeAll(async () => {
    reg = await startRegistry({auth: 'bearer'})
  }, 60_000)
  afterAll(async () => reg?.stop())

  it('takes a token from the realm the challenge names, per scope, and pushes and reads with it', async () => {
    const c = new OciClient(parseOciReference(`oci://${reg.host}/team/cache`, '--cache-to'), {caFile: reg.caFile, credentials: {user: reg.user, password: reg.password, source: 'test'}})
    const blob = Buffer.from('bearer blob')
    await c.pushBlob(digestOf(blob), blob)
    expect((await c.readBlob(digestOf(blob), 100)).equals(blob)).toBe(true)
    const wrong = new OciClient(parseOciReference(`oci://${reg.host}/team/cache`, '--cache-to'), {caFile: reg.caFile, credentials: {user: reg.user, password: 'Wr0ngPass', source: 'test'}})
    const e = await wrong.hasBlob(digestOf(blob)).catch((x: Error) => x)
    expect(String(e)).toMatch(/refused the credentials of user cvm-ci \(from test\)/)
    expect(String(e)).not.toContain('Wr0ngPass')
  }, 60_000)
})
