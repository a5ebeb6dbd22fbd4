import {spawn} from 'node:child_process'
import {readdir, readFile, readlink, stat} from 'node:fs/promises'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {after, QEMU_BASE} from '../../test/helpers/qemu-spec.js'
import {ensureUnprivilegedUser, runAs} from '../../test/helpers/unprivileged.js'
import {run} from '../util/exec.js'
import {freeLoopbackPort} from '../util/net.js'
import {buildQemuArgs} from './qemu-args.js'
import {generateRunKeys, renderSeed, seedNetwork, serveSeed} from './seed.js'

const TEMPLATES = join(import.meta.dirname, '..', '..', 'templates')

/** the TCP ports a process listens on, from its sockets' inodes in /proc/net/tcp{,6} */
async function listeningTcpPorts(pid: number | 'self'): Promise<number[]> {
  const links = await Promise.all((await readdir(`/proc/${pid}/fd`)).map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')))
  const inodes = new Set(links.filter((l) => l.startsWith('socket:[')).map((l) => l.slice(8, -1)))
  const rows = (await Promise.all(['tcp', 'tcp6'].map((f) => readFile(`/proc/net/${f}`, 'utf8')))).flatMap((t) => t.trim().split('\n').slice(1))
  return rows
    .map((r) => r.trim().split(/\s+/))
    .filter((f) => f[3] === '0A' && inodes.has(f[9]))
    .map((f) => Number.parseInt(f[1].split(':')[1], 16))
    .sort()
}

/** one HTTP request through the command QEMU runs for a guest connection (its stdio is the connection) */
async function viaRelay(relay: string[], path: string): Promise<{status: number; body: string}> {
  const r = await run(relay[0], relay.slice(1), {input: `GET ${path} HTTP/1.1\r\nHost: 10.0.2.100\r\n\r\n`, timeout: 10_000})
  const [head, ...body] = r.stdout.split('\r\n\r\n')
  return {status: Number(head.split(' ')[1]), body: body.join('\r\n\r\n')}
}

const qemuBase = QEMU_BASE

describe('serveSeed (issue #29): the guest host key reaches the guest and no other local process', () => {
  it('opens no TCP port: nothing on 127.0.0.1 (or anywhere) answers with the seed', async () => {
    const before = await listeningTcpPorts('self')
    const srv = await serveSeed({userData: 'u', metaData: 'm'})
    try {
      expect(await listeningTcpPorts('self')).toEqual(before)
    } finally {
      await srv.close()
    }
  })

  it('serves the seed files through the relay QEMU runs, one connection each; any other path is 404', async () => {
    const keys = generateRunKeys()
    const seed = await renderSeed(TEMPLATES, keys, {hostname: 'seed-test'})
    const hostKeyBody = keys.hostPrivateKey.split('\n')[1]
    expect(seed.userData).toContain(hostKeyBody)
    const srv = await serveSeed(seed)
    try {
      expect(srv.relay).toEqual(['socat', 'STDIO', `UNIX-CONNECT:${srv.socket}`])
      const ok = await viaRelay(srv.relay, '/user-data')
      expect(ok.status).toBe(200)
      expect(ok.body).toContain(hostKeyBody)
      // run() trims the output: the body's last newline is gone
      expect(await viaRelay(srv.relay, '/meta-data')).toEqual({status: 200, body: seed.metaData.trimEnd()})
      for (const path of ['/', '/../user-data', '/user-data/']) expect((await viaRelay(srv.relay, path)).status, path).toBe(404)
      expect(srv.requests.slice(0, 2)).toEqual(['GET /user-data (connection 1)', 'GET /meta-data (connection 2)'])
    } finally {
      await srv.close()
    }
    await expect(stat(srv.socket)).rejects.toThrow(/ENOENT/)
  })

  it('its Unix socket is in a directory of mode 0700 that another local user cannot enter', async () => {
    const srv = await serveSeed({userData: 'secret-user-data', metaData: 'm'})
    try {
      const dir = await stat(join(srv.socket, '..'))
      expect(dir.mode & 0o777).toBe(0o700)
      expect(dir.uid).toBe(process.getuid!())
    } finally {
      await srv.close()
    }
  })

  // another local user exists only where the tests may make one: as root, as CI runs them
  it.skipIf(process.getuid!() !== 0)('another local user running the same relay, as QEMU would, is refused and gets nothing (needs root to be another user)', async () => {
    const srv = await serveSeed({userData: 'secret-user-data', metaData: 'm'})
    try {
      const r = await runAs(ensureUnprivilegedUser(), srv.relay[0], srv.relay.slice(1), {input: 'GET /user-data HTTP/1.0\r\n\r\n', reject: false, timeout: 10_000})
      expect(r.exitCode).not.toBe(0)
      expect(r.stderr).toMatch(/Permission denied/)
      expect(r.stdout).not.toContain('secret-user-data')
    } finally {
      await srv.close()
    }
  })

  it("QEMU's argv (readable by every local user) names the seed at 10.0.2.100, with no secret and no port on the host", async () => {
    const srv = await serveSeed({userData: 'u', metaData: 'm'})
    try {
      const argv = buildQemuArgs({...qemuBase, ...seedNetwork(srv)})
      expect(after(argv, '-smbios')).toEqual(['type=1,serial=ds=nocloud-net;s=http://10.0.2.100/'])
      // the only host port is the guest's sshd; the seed is behind a relay to a socket only our uid may open
      expect(after(argv, '-netdev')).toEqual([`user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22,guestfwd=tcp:10.0.2.100:80-cmd:socat STDIO UNIX-CONNECT:${srv.socket}`])
      expect(argv.join(' ')).not.toMatch(/[0-9a-f]{32}|10\.0\.2\.2\b/)
    } finally {
      await srv.close()
    }
  })

  it('a real QEMU guest fetches the seed files through that argv, each over a new connection, and QEMU listens only for SSH', async () => {
    // iPXE (QEMU's network boot ROM) stands in for cloud-init: it takes user-data as its boot script and fetches the rest
    const script = '#!ipxe\nimgfetch http://10.0.2.100/meta-data\nimgfetch http://10.0.2.100/vendor-data\n'
    const srv = await serveSeed({userData: script, metaData: 'instance-id: ipxe'})
    const sshPort = await freeLoopbackPort()
    const [netdev] = after(buildQemuArgs({...qemuBase, sshPort, ...seedNetwork(srv)}), '-netdev')
    const qemu = spawn('qemu-system-x86_64', ['-M', 'pc', '-accel', 'tcg', '-m', '128', '-nodefaults', '-no-user-config', '-display', 'none', '-netdev', `${netdev},bootfile=http://10.0.2.100/user-data`, '-device', 'virtio-net-pci,netdev=net0', '-boot', 'n'], {stdio: ['ignore', 'ignore', 'pipe']})
    let stderr = ''
    qemu.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
    try {
      const deadline = Date.now() + 90_000
      while (srv.requests.length < 3 && qemu.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
      expect(srv.requests, stderr).toEqual(['GET /user-data (connection 1)', 'GET /meta-data (connection 2)', 'GET /vendor-data (connection 3)'])
      expect(await listeningTcpPorts(qemu.pid!)).toEqual([sshPort])
    } finally {
      qemu.kill('SIGKILL')
      await srv.close()
    }
  }, 120_000)
})
