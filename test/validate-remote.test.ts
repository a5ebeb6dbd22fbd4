import {existsSync} from 'node:fs'
import {mkdtemp, readdir, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {HostError} from '../src/errors.js'
import {openValidationHost} from '../src/validate/open-host.js'
import {probeHost, requireMode} from '../src/validate/host-probe.js'
import {GUEST_DEFAULTS, validateImage} from '../src/validate/run.js'
import {repoRoot} from './helpers/paths.js'
import {startSshd, type TestSshd} from './helpers/sshd.js'
import {debian12Disk} from './helpers/validate-disk.js'

let sshd: TestSshd
// the server's sessions keep their temp files in its own $TMPDIR (sshd.tmpDir)
const remoteTemps = async () => (await readdir(sshd.tmpDir)).filter((n) => n.startsWith('cvm-validate-')).sort()

describe('validate on a remote host over SSH (a real OpenSSH server on 127.0.0.1)', () => {
  beforeAll(async () => {
    sshd = await startSshd()
  })
  afterAll(async () => {
    await sshd?.stop()
  })

  it('a wrong host key is refused before anything is uploaded or even authenticated', async () => {
    const before = await remoteTemps()
    const wrong = 'SHA256:' + 'A'.repeat(43)
    await expect(openValidationHost({host: `${sshd.user}@127.0.0.1:${sshd.port}`, hostKey: wrong, identity: sshd.userKeyPath})).rejects.toThrow(/not the pinned SHA256:A{43}: refusing to connect/)
    // an unknown key (empty known_hosts) is refused too
    const emptyKnownHosts = join(sshd.dir, 'empty_known_hosts')
    await import('node:fs/promises').then((f) => f.writeFile(emptyKnownHosts, ''))
    await expect(openValidationHost({host: `${sshd.user}@127.0.0.1:${sshd.port}`, knownHostsFile: emptyKnownHosts, identity: sshd.userKeyPath})).rejects.toBeInstanceOf(HostError)
    expect(sshd.log()).not.toMatch(/Accepted publickey/)
    expect(await remoteTemps()).toEqual(before)
  })

  it('doctor service: probes the remote host through the pinned connection and names what sev lacks', async () => {
    const host = await openValidationHost({host: `${sshd.user}@127.0.0.1:${sshd.port}`, knownHostsFile: sshd.knownHostsFile, identity: sshd.userKeyPath})
    try {
      const r = await probeHost(host)
      expect(r.host).toBe(`${sshd.user}@127.0.0.1:${sshd.port}`)
      expect(r.qemu.version).toMatch(/^\d/)
      expect(() => requireMode(r, 'sev')).toThrow(/validation mode sev cannot run on .*127\.0\.0\.1.*\/dev\/sev/s)
    } finally {
      await host.cleanup()
    }
  }, 60_000)

  it('a run through it succeeds: disk up by SFTP (checksummed), QEMU there, guest reached by forwardOut, temp files removed', async () => {
    const target = await debian12Disk()
    const out = await mkdtemp(join(tmpdir(), 'cvm-validate-remote-'))
    const before = await remoteTemps()
    const progress: string[] = []
    try {
      const host = await openValidationHost({host: `${sshd.user}@127.0.0.1:${sshd.port}`, hostKey: sshd.hostKeyFingerprint, identity: sshd.userKeyPath})
      const report = await validateImage({
        ...GUEST_DEFAULTS,
        disk: target.disk,
        modes: ['emulated'],
        host,
        templatesDir: join(repoRoot, 'templates'),
        outDir: out,
        expected: {release: target.release, version: target.version, diskSha256: target.diskSha256, ukiSha256: target.ukiSha256},
        diskBoot: false,
        progress: (l) => progress.push(l),
        log: (l) => process.stderr.write(`[remote] ${l}\n`),
      })
      for (const c of report.checks) process.stderr.write(`  ${c.verdict} ${c.name}: ${c.evidence}\n`)
      expect(report.host).toBe(`${sshd.user}@127.0.0.1:${sshd.port}`)
      expect(progress.some((l) => /uploading the disk to .*: 100%/.test(l))).toBe(true)
      const by = (n: string) => report.checks.find((c) => c.name === n)
      expect(by('boot')).toMatchObject({verdict: 'pass'})
      expect(by('kernel')!.verdict).not.toBe('fail')
      expect(by('nvme-integrity')).toMatchObject({verdict: 'pass'})
      expect(by('poweroff')).toMatchObject({verdict: 'pass'})
      expect(by('image-unchanged')).toMatchObject({verdict: 'pass'})
      expect(existsSync(join(out, 'serial.log'))).toBe(true)
      expect(sshd.log()).toMatch(/Accepted publickey/)
      // remote temp files are gone
      expect(await remoteTemps()).toEqual(before)
    } finally {
      await rm(out, {recursive: true, force: true})
    }
  }, 2_400_000)
})
