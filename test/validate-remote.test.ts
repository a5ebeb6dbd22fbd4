import {existsSync} from 'node:fs'
import {mkdtemp, readdir, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {EFI_STUB, buildUki} from '../src/disk/uki.js'
import {HostError} from '../src/errors.js'
import {connect} from '../src/remote/ssh.js'
import {takeHostLock} from '../src/validate/host-lock.js'
import {openHostPool, openValidationHost} from '../src/validate/open-host.js'
import {probeHost, probeValidationHost, requireMode, type HostReport} from '../src/validate/host-probe.js'
import {GUEST_DEFAULTS, validateImage} from '../src/validate/run.js'
import {makeGptDisk} from './helpers/disk-fixture.js'
import {repoRoot} from './helpers/paths.js'
import {startSshd, type TestSshd} from './helpers/sshd.js'
import {debian12Disk} from './helpers/validate-disk.js'

// two validation hosts: two real sshd, each with its own port and work directory ($TMPDIR); one key logs in to both
let sshd: TestSshd
let other: TestSshd
const address = (s: TestSshd) => `${s.user}@127.0.0.1:${s.port}`
// the server's sessions keep their temp files in its own $TMPDIR (sshd.tmpDir)
const remoteTemps = async (s: TestSshd = sshd) => (await readdir(s.tmpDir)).filter((n) => n.startsWith('cvm-validate-')).sort()
/** this machine's report, as every host here is this machine */
let probed: HostReport | undefined
const hostLock = (s: TestSshd) => join(s.tmpDir, 'cvm-image-host.lock')

describe('validate on a remote host over SSH (a real OpenSSH server on 127.0.0.1), and on a pool of two', () => {
  beforeAll(async () => {
    ;[sshd, other] = await Promise.all([startSshd(), startSshd()])
    await writeFile(join(other.dir, 'authorized_keys'), await readFile(`${sshd.userKeyPath}.pub`), {flag: 'a'})
  })
  afterAll(async () => {
    await Promise.all([sshd?.stop(), other?.stop()])
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
      const r = (probed = await probeHost(host))
      expect(r.host).toBe(`${sshd.user}@127.0.0.1:${sshd.port}`)
      expect(r.qemu.version).toMatch(/^\d/)
      expect(() => requireMode(r, 'sev')).toThrow(/validation mode sev cannot run on .*127\.0\.0\.1.*\/dev\/sev/s)
    } finally {
      await host.cleanup()
    }
  }, 60_000)

  it('the boots of one validation spread over a pool of two hosts at once, one per host: the report names which host ran which boot (boots that cannot reach SSH: no guest is needed for where they ran)', async () => {
    // a 1 GiB sparse disk whose ESP holds a small real UKI (systemd's stub standing in for the kernel): each boot runs QEMU there, and never reaches SSH
    const work = await mkdtemp(join(tmpdir(), 'cvm-validate-pool-'))
    try {
      await writeFile(join(work, 'cmdline'), 'console=ttyS0 root=PARTUUID=0f7a4c3e-1111-4e0c-9d7a-3b2f6c1d2e3f ro')
      await writeFile(join(work, 'osrel'), 'ID=debian\nVERSION_ID="12"\n')
      await buildUki({vmlinuz: EFI_STUB, cmdlineFile: join(work, 'cmdline'), osReleaseFile: join(work, 'osrel')}, join(work, 'uki.efi'), {sourceDateEpoch: 1_700_000_000})
      const disk = await makeGptDisk(join(work, 'disk.raw'), 0.25, 'pool', {uki: join(work, 'uki.efi')})
      const progress: string[] = []
      const pool = openHostPool({hosts: [sshd, other].map((s) => ({address: address(s), hostKey: s.hostKeyFingerprint})), identity: sshd.userKeyPath}, (l) => progress.push(l))!
      const report = await validateImage({
        ...GUEST_DEFAULTS,
        bootTimeoutS: 3,
        disk: disk.path,
        modes: ['emulated'],
        pool,
        diskBoot: true,
        templatesDir: join(repoRoot, 'templates'),
        outDir: join(work, 'out'),
        // the hosts are alike (this machine): probed once, by the doctor test above or here
        hostReport: probed ?? (probed = await probeValidationHost({host: address(sshd), hostKey: sshd.hostKeyFingerprint, identity: sshd.userKeyPath})),
        progress: (l) => progress.push(l),
      })
      // each boot on its own host, both named in the report and report.json
      const ran = Object.fromEntries(report.modes.map((m) => [m.boot, m.host]))
      expect(Object.keys(ran)).toEqual(['emulated', 'emulated-disk-boot'])
      expect(new Set(Object.values(ran))).toEqual(new Set([address(sshd), address(other)]))
      expect(report.host.split(', ').sort()).toEqual([address(sshd), address(other)].sort())
      expect(JSON.parse(await readFile(join(work, 'out', 'report.json'), 'utf8')).modes.map((m: {host: string}) => m.host)).toEqual(report.modes.map((m) => m.host))
      // both disks went up (one upload per host) and both copies are unchanged after the boots
      for (const s of [sshd, other]) expect(progress.some((l) => l.startsWith(`uploading the disk to ${address(s)}: 100%`))).toBe(true)
      const unchanged = report.checks.find((c) => c.name === 'image-unchanged')!
      expect(unchanged.verdict).toBe('pass')
      expect(unchanged.evidence).toContain('copies on')
      // a failed boot is a failed check, from each boot's own host; its serial log came back from there
      expect(report.checks.filter((c) => /^(disk-boot:)?boot$/.test(c.name)).map((c) => c.verdict)).toEqual(['fail', 'fail'])
      expect(existsSync(join(work, 'out', 'serial.log')) && existsSync(join(work, 'out', 'serial-emulated-disk-boot.log'))).toBe(true)
      // each host's lock released, its temp files gone
      for (const s of [sshd, other]) {
        expect(existsSync(hostLock(s))).toBe(false)
        expect(await remoteTemps(s)).toEqual([])
      }
    } finally {
      await rm(work, {recursive: true, force: true})
    }
  }, 300_000)

  it('a run through a pool whose first host is busy with another run: the boot goes to the second; disk up by SFTP (checksummed), QEMU there, guest reached by forwardOut, temp files removed', async () => {
    const target = await debian12Disk()
    const out = await mkdtemp(join(tmpdir(), 'cvm-validate-remote-'))
    const before = await remoteTemps(other)
    const progress: string[] = []
    // another run holds the first host's lock
    const elsewhere = await connect(address(sshd), {hostKey: sshd.hostKeyFingerprint, privateKey: sshd.userKeyPath})
    const busy = await takeHostLock(elsewhere, 'another run (emulated)')
    expect(busy.held).toBe(true)
    try {
      const pool = openHostPool({host: [address(sshd), address(other)], knownHostsFile: join(out, 'known_hosts'), identity: sshd.userKeyPath}, (l) => progress.push(l))!
      await writeFile(join(out, 'known_hosts'), (await readFile(sshd.knownHostsFile, 'utf8')) + (await readFile(other.knownHostsFile, 'utf8')))
      const report = await validateImage({
        ...GUEST_DEFAULTS,
        disk: target.disk,
        modes: ['emulated'],
        pool,
        templatesDir: join(repoRoot, 'templates'),
        outDir: out,
        expected: {release: target.release, version: target.version, diskSha256: target.diskSha256, ukiSha256: target.ukiSha256},
        diskBoot: false,
        progress: (l) => progress.push(l),
        log: (l) => process.stderr.write(`[remote] ${l}\n`),
      })
      for (const c of report.checks) process.stderr.write(`  ${c.verdict} ${c.name}: ${c.evidence}\n`)
      // the busy host was skipped: the boot ran on the other, and the report says so
      expect(report.host).toBe(address(other))
      expect(report.modes.map((m) => m.host)).toEqual([address(other)])
      expect(progress).toContain(`emulated: on ${address(other)}`)
      expect(progress.some((l) => l.startsWith(`uploading the disk to ${address(other)}: 100%`))).toBe(true)
      expect(progress.some((l) => l.includes(`uploading the disk to ${address(sshd)}`))).toBe(false)
      const by = (n: string) => report.checks.find((c) => c.name === n)
      expect(by('boot')).toMatchObject({verdict: 'pass'})
      expect(by('kernel')!.verdict).not.toBe('fail')
      expect(by('nvme-integrity')).toMatchObject({verdict: 'pass'})
      expect(by('poweroff')).toMatchObject({verdict: 'pass'})
      expect(by('image-unchanged')).toMatchObject({verdict: 'pass'})
      expect(existsSync(join(out, 'serial.log'))).toBe(true)
      expect(other.log()).toMatch(/Accepted publickey/)
      // remote temp files are gone, the lock released; the other run's lock is untouched
      expect(await remoteTemps(other)).toEqual(before)
      expect(existsSync(hostLock(other))).toBe(false)
      expect(await readFile(join(hostLock(sshd), 'owner'), 'utf8')).toContain('another run (emulated)')
    } finally {
      if (busy.held) await busy.release()
      await elsewhere.close()
      await rm(out, {recursive: true, force: true})
    }
  }, 2_400_000)
})
