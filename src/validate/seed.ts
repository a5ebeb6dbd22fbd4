import {randomBytes} from 'node:crypto'
import {readFile, writeFile} from 'node:fs/promises'
import {createServer} from 'node:http'
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

/**
 * The seed over HTTP for cloud-init's NoCloudNet, on 127.0.0.1 (the guest reaches it as 10.0.2.2
 * through QEMU's user network). Only for a local host. user-data holds the guest's host private key,
 * and any local user can reach 127.0.0.1: the files are served only under a random path (`base`),
 * which only QEMU's SMBIOS serial is given; every other path is 404.
 */
export async function serveSeed(seed: NoCloudSeed): Promise<{port: number; base: string; requests: string[]; close(): Promise<void>}> {
  const requests: string[] = []
  const base = `/${randomBytes(32).toString('hex')}/`
  const files: Record<string, string> = {[`${base}user-data`]: seed.userData, [`${base}meta-data`]: seed.metaData, [`${base}vendor-data`]: ''}
  const srv = createServer((req, res) => {
    // the log names the file, never the token
    requests.push(`${req.method} ${req.url?.startsWith(base) ? `/<token>/${req.url.slice(base.length)}` : req.url}`)
    const body = req.method === 'GET' ? files[req.url ?? ''] : undefined
    res.writeHead(body === undefined ? 404 : 200, {'content-type': 'text/plain'})
    res.end(body ?? '')
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const addr = srv.address()
  const port = typeof addr === 'object' && addr ? addr.port : 0
  return {port, base, requests, close: () => new Promise((resolve) => srv.close(() => resolve()))}
}
