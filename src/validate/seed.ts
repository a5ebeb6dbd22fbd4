import {randomBytes} from 'node:crypto'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {createServer} from 'node:http'
import type {Socket} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import Handlebars from 'handlebars'
import ssh2 from 'ssh2'

import {BugError} from '../errors.js'
import {fingerprintOfLine} from '../remote/host-key.js'
import {generateEd25519} from '../remote/openssh-key.js'
import {run} from '../util/exec.js'

/** Keys made for one validation run: the client key the guest accepts, and the guest's own host key. */
export interface RunKeys {
  clientPrivateKey: string
  clientPublicKey: string
  hostPrivateKey: string
  hostPublicKey: string
  /** SHA256:<base64> of the guest host key, as ssh-keygen -l prints it */
  hostKeyFingerprint: string
}

export interface NoCloudSeed {
  userData: string
  metaData: string
}

/** Ephemeral ed25519 keys, generated in memory for every run; they never touch the image. */
export function generateRunKeys(): RunKeys {
  const client = generateEd25519('cvm-image-validate')
  const host = generateEd25519('cvm-image-validate-guest')
  for (const [name, key] of [['client key', client], ['guest host key', host]] as const) {
    // a key the SSH client cannot read would only show as 10 minutes of failed logins: refuse it now
    const parsed = ssh2.utils.parseKey(key.private)
    if (parsed instanceof Error) throw new BugError(`the run's ${name} cannot be read back: ${parsed.message}`)
  }
  return {
    clientPrivateKey: client.private,
    clientPublicKey: client.public,
    hostPrivateKey: host.private,
    hostPublicKey: host.public,
    hostKeyFingerprint: fingerprintOfLine(host.public),
  }
}

/** Renders templates/seed/{user-data,meta-data}.hbs for one run. */
export async function renderSeed(templatesDir: string, keys: RunKeys, opts: {hostname: string; instanceId?: string}): Promise<NoCloudSeed> {
  const hb = Handlebars.create()
  hb.registerHelper('indent', (text: string, n: number) =>
    new Handlebars.SafeString(
      String(text)
        .trimEnd()
        .split('\n')
        .map((l) => ' '.repeat(n) + l)
        .join('\n'),
    ),
  )
  const vars = {
    authorizedKey: keys.clientPublicKey.trim(),
    hostKeyPrivate: keys.hostPrivateKey,
    hostKeyPublic: keys.hostPublicKey.trim(),
    hostname: opts.hostname,
    instanceId: opts.instanceId ?? `cvm-validate-${randomBytes(6).toString('hex')}`,
  }
  const render = async (name: string) => hb.compile(await readFile(join(templatesDir, 'seed', `${name}.hbs`), 'utf8'), {noEscape: true})(vars)
  return {userData: await render('user-data'), metaData: await render('meta-data')}
}

export const SEED_LABEL = 'CIDATA'

/**
 * A NoCloud seed disk: a small FAT filesystem labelled CIDATA holding user-data and meta-data,
 * made on a plain file with mkfs.vfat and mtools (no mount, no root).
 */
export async function writeSeedDisk(dir: string, seed: NoCloudSeed, signal?: AbortSignal): Promise<string> {
  const img = join(dir, 'seed.img')
  const userData = join(dir, 'user-data')
  const metaData = join(dir, 'meta-data')
  await writeFile(userData, seed.userData, {mode: 0o600})
  await writeFile(metaData, seed.metaData)
  await run('mkfs.vfat', ['-C', '-n', SEED_LABEL, img, '1024'], {what: 'make the NoCloud seed disk', signal})
  await run('mcopy', ['-i', img, userData, metaData, '::'], {what: 'copy the NoCloud seed files', signal})
  return img
}

/** Where the guest reaches the HTTP seed: QEMU's user network hands its connections to the relay (guestfwd). */
export const SEED_GUEST_ADDRESS = '10.0.2.100'
export const SEED_GUEST_PORT = 80
/** the SMBIOS type 1 serial that points cloud-init's NoCloudNet at the seed; it holds no secret */
export const SEED_SMBIOS_SERIAL = `ds=nocloud-net;s=http://${SEED_GUEST_ADDRESS}/`

export interface SeedServer {
  /** the Unix socket the server listens on, in a directory of mode 0700 */
  socket: string
  /** what QEMU runs for each connection the guest opens to SEED_GUEST_ADDRESS:SEED_GUEST_PORT: stdio to the socket */
  relay: string[]
  /** "GET /user-data (connection 1)", for the run's log */
  requests: string[]
  close(): Promise<void>
}

/**
 * The seed over HTTP for cloud-init's NoCloudNet. user-data holds the guest's host private key, and
 * any local user can reach 127.0.0.1 and read QEMU's argv: so nothing listens on TCP. The server
 * listens on a Unix socket in a fresh directory of mode 0700, which only our uid can enter; QEMU's
 * user network runs `relay` (socat) for each connection the guest opens to 10.0.2.100:80.
 */
export async function serveSeed(seed: NoCloudSeed): Promise<SeedServer> {
  const requests: string[] = []
  const files: Record<string, string> = {'/user-data': seed.userData, '/meta-data': seed.metaData, '/vendor-data': ''}
  // short (a socket's path has 107 bytes at most) and plain: QEMU's guestfwd and socat take it unquoted
  const root = /^[\w./-]{1,60}$/.test(tmpdir()) ? tmpdir() : '/tmp'
  // mkdtemp makes it 0700
  const dir = await mkdtemp(join(root, 'cvm-seed-'))
  const socket = join(dir, 'seed.sock')
  const connection = new WeakMap<Socket, number>()
  let opened = 0
  const srv = createServer((req, res) => {
    requests.push(`${req.method} ${req.url} (connection ${connection.get(req.socket)})`)
    const body = req.method === 'GET' ? files[req.url ?? ''] : undefined
    // one request per connection, as cloud-init makes them: each is a relay of its own
    res.writeHead(body === undefined ? 404 : 200, {'content-type': 'text/plain', 'content-length': Buffer.byteLength(body ?? ''), connection: 'close'})
    res.end(body ?? '')
  })
  srv.on('connection', (c: Socket) => connection.set(c, ++opened))
  try {
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject)
      srv.listen(socket, resolve)
    })
  } catch (e) {
    await rm(dir, {recursive: true, force: true})
    throw e
  }
  return {
    socket,
    relay: ['socat', 'STDIO', `UNIX-CONNECT:${socket}`],
    requests,
    close: async () => {
      await new Promise<void>((resolve) => srv.close(() => resolve()))
      await rm(dir, {recursive: true, force: true})
    },
  }
}

/** QEMU's part of the HTTP seed: the SMBIOS serial that names it, and the guest's connections to it relayed to the server. */
/** A guest connection QEMU's user network hands to a command (guestfwd=tcp:ADDRESS:PORT-cmd:COMMAND): one run per connection. */
export interface GuestForward {
  address: string
  port: number
  command: string[]
}

export function seedNetwork(server: SeedServer): {smbiosSerial: string; guestForward: GuestForward} {
  return {smbiosSerial: SEED_SMBIOS_SERIAL, guestForward: {address: SEED_GUEST_ADDRESS, port: SEED_GUEST_PORT, command: server.relay}}
}
