import {generateKeyPairSync, randomBytes} from 'node:crypto'
import {existsSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {link, mkdir, mkdtemp, open, readFile, readlink, rm, stat, symlink, writeFile} from 'node:fs/promises'
import {createServer, connect, type Server} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {startRegistry, type TestRegistry} from '../../test/helpers/registry.js'
import {OciClient} from '../remote/oci/client.js'
import {parseOciReference} from '../remote/oci/reference.js'
import {StageCache} from './cache.js'
import {loadCacheSigner, loadTrustedKey, type CacheSigner} from './cache-signature.js'
import {RemoteStageCache, entryTag} from './remote-cache.js'

const KEY = 'a'.repeat(64)

describe('the stage cache in an OCI registry (docker-registry 2.8)', () => {
  let reg: TestRegistry
  let dir: string
  let alice: CacheSigner
  let bob: CacheSigner
  let alicePub: string
  let payload: Buffer

  /** A key pair as files: the private key 0600, as --cache-key requires. */
  async function keyPair(name: string): Promise<{signer: CacheSigner; pub: string}> {
    const {privateKey, publicKey} = generateKeyPairSync('ed25519')
    const priv = join(dir, `${name}.pem`)
    const pub = join(dir, `${name}.pub`)
    await writeFile(priv, privateKey.export({type: 'pkcs8', format: 'pem'}), {mode: 0o600})
    await writeFile(pub, publicKey.export({type: 'spki', format: 'pem'}))
    return {signer: loadCacheSigner(priv), pub}
  }

  const client = (host = reg.host, timeoutMs = 10_000) =>
    new OciClient(parseOciReference(`oci://${host}/team/stages`, '--cache-to'), {caFile: reg.caFile, credentials: {user: reg.user, password: reg.password, source: 'test'}, timeoutMs})

  /** A finished local entry as the runner commits one: files, a subdirectory, a symlink, result.json. */
  async function localEntry(name: string, key = KEY): Promise<StageCache> {
    const cache = new StageCache(join(dir, name))
    const temp = await cache.makeTemp('base', key)
    await writeFile(join(temp, 'rootfs.tar'), payload)
    await mkdir(join(temp, 'sub'))
    await writeFile(join(temp, 'sub', 'stage.log'), 'ran\n')
    await symlink('../rootfs.tar', join(temp, 'sub', 'link'))
    await cache.commit('base', key, temp, {suite: 'bookworm', bytes: payload.length})
    return cache
  }

  function blobData(digest: string): string {
    const hex = digest.slice('sha256:'.length)
    return join(reg.dir, 'storage', 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data')
  }

  /** Nothing of a failed pull is left: no entry, no temp directory. */
  function expectNothingLeft(cache: StageCache, key = KEY): void {
    expect(existsSync(cache.entryDir('base', key))).toBe(false)
    expect(existsSync(join(cache.root, 'tmp')) ? readdirSync(join(cache.root, 'tmp')) : []).toEqual([])
  }

  async function layerDigest(key = KEY): Promise<string> {
    const m = await client().getManifest(entryTag('base', key))
    return m!.manifest.layers[0].digest
  }

  beforeAll(async () => {
    reg = await startRegistry()
    dir = await mkdtemp(join(tmpdir(), 'cvm-remote-cache-'))
    ;({signer: alice, pub: alicePub} = await keyPair('alice'))
    ;({signer: bob} = await keyPair('bob'))
    // random bytes: the layer does not compress, so it is large enough to cut in the middle
    payload = randomBytes(600_000)
  }, 60_000)
  afterAll(async () => {
    await reg?.stop()
    if (dir) await rm(dir, {recursive: true, force: true})
  })

  it('pushes a local entry once, and a runner trusting the key pulls the same files into its cache', async () => {
    const local = await localEntry('runner-a')
    const remote = new RemoteStageCache(client(), {signer: alice, trusted: []})
    expect(await remote.push(local, 'base', KEY)).toBe('pushed')
    expect(await remote.push(local, 'base', KEY)).toBe('present')

    const other = new StageCache(join(dir, 'runner-b'))
    const reader = new RemoteStageCache(client(), {trusted: [loadTrustedKey(alicePub)]})
    expect(await reader.probe('base', KEY)).toEqual({ok: true})
    const pulled = await reader.pull(other, 'base', KEY)
    expect('result' in pulled ? pulled.result.meta : pulled.reason).toEqual({suite: 'bookworm', bytes: payload.length})
    const entry = other.entryDir('base', KEY)
    expect((await readFile(join(entry, 'rootfs.tar'))).equals(payload)).toBe(true)
    expect(await readFile(join(entry, 'sub', 'stage.log'), 'utf8')).toBe('ran\n')
    expect(await readlink(join(entry, 'sub', 'link'))).toBe('../rootfs.tar')
    expect(await readFile(join(entry, 'result.json'))).toEqual(await readFile(join(local.entryDir('base', KEY), 'result.json')))
    expect(readdirSync(join(other.root, 'tmp'))).toEqual([])
  }, 120_000)

  it('pushes an entry whose files a later stage links (cp -al) while the push reads them: the layer is whole', async () => {
    // patch links kernel-source's tree, compile patch's (src/kernel/tree.ts): a new link changes a
    // file's ctime, which tar took for "file changed as we read it" (exit 1) and the push was lost
    const cache = new StageCache(join(dir, 'runner-linked'))
    const key = '9'.repeat(64)
    const temp = await cache.makeTemp('base', key)
    const big = randomBytes(48 << 20)
    await writeFile(join(temp, 'rootfs.tar'), big)
    await cache.commit('base', key, temp, {suite: 'bookworm', bytes: big.length})
    const remote = new RemoteStageCache(client(), {signer: alice, trusted: []})
    const pushed = remote.push(cache, 'base', key)
    // once tar has begun writing the layer it is reading the entry's one big file: link it then
    const tmp = join(cache.root, 'tmp')
    let linked = false
    for (let i = 0; i < 3000 && !linked; i++) {
      const layer = (existsSync(tmp) ? readdirSync(tmp) : []).map((d) => join(tmp, d, 'entry.tar.gz')).find((f) => existsSync(f) && statSync(f).size > 0)
      if (layer) {
        await link(join(cache.entryDir('base', key), 'rootfs.tar'), join(dir, 'linked-rootfs.tar'))
        linked = true
      } else await new Promise((r) => setTimeout(r, 5))
    }
    expect(linked, 'the push ended before its layer could be seen').toBe(true)
    expect(await pushed).toBe('pushed')
    const other = new StageCache(join(dir, 'runner-linked-reader'))
    const pulled = await new RemoteStageCache(client(), {trusted: [loadTrustedKey(alicePub)]}).pull(other, 'base', key)
    expect('result' in pulled ? 'pulled' : pulled.reason).toBe('pulled')
    expect((await readFile(join(other.entryDir('base', key), 'rootfs.tar'))).equals(big)).toBe(true)
  }, 120_000)

  it('a sparse file (a disk.raw) travels as its data and holes: the layer is small, the pulled file sparse and equal', async () => {
    const key = 'f'.repeat(64)
    const cache = new StageCache(join(dir, 'sparse-src'))
    const temp = await cache.makeTemp('assemble', key)
    const disk = join(temp, 'disk.raw')
    const data = randomBytes(64 << 10)
    const at = 512 << 20
    await writeFile(disk, '')
    const fh = await open(disk, 'r+')
    await fh.write(data, 0, data.length, at)
    await fh.truncate(1 << 30)
    await fh.close()
    await cache.commit('assemble', key, temp, {diskSha256: 'x'})
    expect(await new RemoteStageCache(client(), {signer: alice, trusted: []}).push(cache, 'assemble', key)).toBe('pushed')
    const m = await client().getManifest(entryTag('assemble', key))
    expect(m!.manifest.layers[0].size).toBeLessThan(1 << 20)

    const other = new StageCache(join(dir, 'sparse-dst'))
    const r = await new RemoteStageCache(client(), {trusted: [alice.publicKey]}).pull(other, 'assemble', key)
    expect('result' in r ? r.result.meta : r.reason).toEqual({diskSha256: 'x'})
    const pulled = join(other.entryDir('assemble', key), 'disk.raw')
    const st = await stat(pulled)
    expect(st.size).toBe(1 << 30)
    expect(st.blocks * 512).toBeLessThan(4 << 20)
    const back = Buffer.alloc(data.length + 2)
    const rh = await open(pulled, 'r')
    await rh.read(back, 0, back.length, at - 1)
    await rh.close()
    expect(back.subarray(1, 1 + data.length).equals(data)).toBe(true)
    expect([back[0], back[back.length - 1]]).toEqual([0, 0])
  }, 60_000)

  it('uses no entry signed by a key it does not trust, and says whose it was', async () => {
    const cache = new StageCache(join(dir, 'untrusting'))
    const reader = new RemoteStageCache(client(), {trusted: [bob.publicKey]})
    const r = await reader.pull(cache, 'base', KEY)
    expect('reason' in r && r.reason).toMatch(new RegExp(`signed by key ${alice.keyid.slice(0, 16)}, which is not in the trusted list`))
    expectNothingLeft(cache)
    expect(await new RemoteStageCache(client(), {trusted: []}).probe('base', KEY)).toMatchObject({reason: /no key is trusted/})
  })

  it('refuses a signature moved to another key\'s tag', async () => {
    const otherKey = 'b'.repeat(64)
    const c = client()
    const sig = await c.getManifest(`${entryTag('base', KEY)}.sig`)
    await c.putManifest(`${entryTag('base', otherKey)}.sig`, sig!.bytes)
    const cache = new StageCache(join(dir, 'retag'))
    const r = await new RemoteStageCache(c, {trusted: [alice.publicKey]}).pull(cache, 'base', otherKey)
    expect('reason' in r && r.reason).toMatch(/its signature vouches for base-a{64}, not this entry/)
    expectNothingLeft(cache, otherKey)
  })

  it('refuses a layer whose bytes are not its digest, and one the registry lost (404 mid-pull), leaving nothing', async () => {
    const key = 'c'.repeat(64)
    await new RemoteStageCache(client(), {signer: alice, trusted: []}).push(await localEntry('tamper-src', key), 'base', key)
    const data = blobData(await layerDigest(key))
    const original = await readFile(data)
    const flipped = Buffer.from(original)
    flipped[flipped.length >> 1] ^= 0xff
    writeFileSync(data, flipped)
    const cache = new StageCache(join(dir, 'tamper'))
    const reader = new RemoteStageCache(client(), {trusted: [alice.publicKey]})
    const r = await reader.pull(cache, 'base', key)
    expect('reason' in r && r.reason).toMatch(/its bytes hash to sha256:[0-9a-f]{64}, not the digest asked for: refused/)
    expectNothingLeft(cache, key)

    // the manifest and signature are there, the layer's bytes are gone: the registry answers 404 for it
    rmSync(data)
    const lost = await reader.pull(cache, 'base', key)
    expect('reason' in lost && lost.reason).toMatch(/answered (404|500) to GET blob/)
    expectNothingLeft(cache, key)
  }, 60_000)

  it('leaves nothing when the connection is cut halfway through the layer', async () => {
    // a TCP relay to the registry that drops a connection after 200 kB towards the client: only the layer is that large
    const relay: Server = createServer((down) => {
      const up = connect(Number(reg.host.split(':')[1]), '127.0.0.1')
      let sent = 0
      down.pipe(up)
      up.on('data', (chunk: Buffer) => {
        sent += chunk.length
        if (sent > 200_000) {
          down.destroy()
          up.destroy()
        } else down.write(chunk)
      })
      up.on('error', () => down.destroy())
      down.on('error', () => up.destroy())
    })
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r))
    const key = 'e'.repeat(64)
    await new RemoteStageCache(client(), {signer: alice, trusted: []}).push(await localEntry('cut-src', key), 'base', key)
    try {
      const cache = new StageCache(join(dir, 'cut'))
      const r = await new RemoteStageCache(client(`127.0.0.1:${(relay.address() as {port: number}).port}`), {trusted: [alice.publicKey]}).pull(cache, 'base', key)
      expect('reason' in r && r.reason).toMatch(/blob sha256:[0-9a-f]{64} (could not be read|ended after)/)
      expectNothingLeft(cache, key)
    } finally {
      relay.close()
    }
  }, 60_000)

  it('a registry that is down is a reason, not a failure', async () => {
    const closed = createServer()
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r))
    const port = (closed.address() as {port: number}).port
    await new Promise((r) => closed.close(r))
    const cache = new StageCache(join(dir, 'down'))
    const r = await new RemoteStageCache(client(`127.0.0.1:${port}`), {trusted: [alice.publicKey]}).pull(cache, 'base', KEY)
    expect('reason' in r && r.reason).toMatch(/ECONNREFUSED/)
    expectNothingLeft(cache)
  })

  it('two runners pushing one key at once both succeed, and the entry read is one whole pair', async () => {
    const key = 'd'.repeat(64)
    const [a, b] = await Promise.all([localEntry('race-a', key), localEntry('race-b', key)])
    const pushed = await Promise.all([
      new RemoteStageCache(client(), {signer: alice, trusted: []}).push(a, 'base', key),
      new RemoteStageCache(client(), {signer: bob, trusted: []}).push(b, 'base', key),
    ])
    expect(pushed).toEqual(['pushed', 'pushed'])
    const cache = new StageCache(join(dir, 'race-reader'))
    const r = await new RemoteStageCache(client(), {trusted: [alice.publicKey, bob.publicKey]}).pull(cache, 'base', key)
    expect('result' in r ? (await readFile(join(r.result.dir, 'rootfs.tar'))).equals(payload) : r.reason).toBe(true)
  }, 120_000)
})
