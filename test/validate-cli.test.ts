import {mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {cli} from './helpers/cli.js'
import {startSshd} from './helpers/sshd.js'


describe('cvm-image validate (the built binary)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cvm-validate-cli-'))
  const disk = join(dir, 'disk.raw')
  writeFileSync(disk, Buffer.alloc(1024))

  it('--mode sev on this machine (no SEV) exits 3 and names the missing host capability, before any boot', async () => {
    const r = await cli(['validate', disk, '--mode', 'sev', '--out', join(dir, 'out'), '--json'])
    expect(r.code).toBe(3)
    const {error} = JSON.parse(r.stdout) as {error: {message: string; details: string[]; hint: string; exitCode: number}}
    expect(error.exitCode).toBe(3)
    expect(error.message).toMatch(/validation mode sev cannot run on local: it lacks .*\/dev\/sev/)
    expect(error.details.join('\n')).toMatch(/kvm_amd/)
    expect(error.hint).toMatch(/--host user@host|--mode emulated/)
  }, 60_000)

  it('--mode snp and --mode tdx on this machine (no SNP, no TDX, QEMU 7.2) exit 3 naming each missing piece, the QEMU version among them, before any boot', async () => {
    for (const [mode, pieces, qemu] of [
      ['snp', /kvm_amd[\s\S]*\/dev\/sev[\s\S]*SEV firmware with SNP initialised/, /QEMU 9\.1 or later for sev-snp-guest \(this host's qemu-system-x86_64 is 7\.2\.\d+\)/],
      ['tdx', /kvm_intel/, /QEMU 10\.1 or later for tdx-guest \(this host's qemu-system-x86_64 is 7\.2\.\d+\)/],
    ] as const) {
      const r = await cli(['validate', disk, '--mode', mode, '--out', join(dir, `out-${mode}`), '--json'])
      expect(r.code).toBe(3)
      const {error} = JSON.parse(r.stdout) as {error: {message: string; details: string[]; hint: string; exitCode: number}}
      expect(error.message).toMatch(new RegExp(`^validation mode ${mode} cannot run on local: it lacks `))
      expect(error.details.join('\n')).toMatch(pieces)
      expect(error.details.join('\n')).toMatch(qemu)
      expect(error.hint).toContain(mode === 'snp' ? 'an AMD host with SEV-SNP enabled and QEMU 9.1+' : 'an Intel host with TDX enabled and QEMU 10.1+')
    }
  }, 120_000)

  it('--hosts-file: a line without its pinned key is refused naming file:line (exit 2); one host of the file presenting another key refuses the run (exit 3) before the disk is read, a good file connects to every host (real sshd)', async () => {
    const [one, two] = await Promise.all([startSshd(), startSshd()])
    try {
      const [a, b] = [one, two].map((s) => `${s.user}@127.0.0.1:${s.port}`)
      const hosts = join(dir, 'hosts')
      writeFileSync(hosts, `# pool\n${a} ${one.hostKeyFingerprint}\n${b}\n`)
      const bad = await cli(['validate', disk, '--hosts-file', hosts, '--out', join(dir, 'out-pool'), '--json'])
      expect(bad.code).toBe(2)
      expect((JSON.parse(bad.stdout) as {error: {message: string}}).error.message).toBe(`--hosts-file: ${hosts}:3: a host without its pinned host key: ${JSON.stringify(b)}`)
      // b pinned to a's key: refused, though a is fine; nothing is read of the disk (a 1 KiB non-disk would fail later)
      writeFileSync(hosts, `${a} ${one.hostKeyFingerprint}\n${b} ${one.hostKeyFingerprint}\n`)
      const lying = await cli(['validate', disk, '--hosts-file', hosts, '--identity', one.userKeyPath, '--host-wait', '5', '--out', join(dir, 'out-pool'), '--json'])
      expect(lying.code).toBe(3)
      expect((JSON.parse(lying.stdout) as {error: {message: string}}).error.message).toMatch(new RegExp(`host key of 127\\.0\\.0\\.1:${two.port} is SHA256:\\S+, not the pinned ${one.hostKeyFingerprint.replace(/[+/]/g, '\\$&')}: refusing to connect`))
      // each pinned to its own key: both connect, then the 1 KiB non-disk is refused as no disk image, not a host
      writeFileSync(join(two.dir, 'authorized_keys'), `${readFileSync(`${one.userKeyPath}.pub`, 'utf8')}`, {flag: 'a'})
      writeFileSync(hosts, `${a} ${one.hostKeyFingerprint}\n${b} ${two.hostKeyFingerprint}\n`)
      const good = await cli(['validate', disk, '--hosts-file', hosts, '--identity', one.userKeyPath, '--out', join(dir, 'out-pool'), '--json'])
      expect(good.code).toBe(2)
      expect((JSON.parse(good.stdout) as {error: {message: string}}).error.message).toContain(disk)
      expect(good.stdout).not.toMatch(/refusing to connect/)
      for (const s of [one, two]) expect(s.log()).toMatch(/Accepted publickey/)
    } finally {
      await Promise.all([one.stop(), two.stop()])
    }
  }, 120_000)

  it('--host-key means what it means in build and publish: with no pin, ~/.ssh/known_hosts decides, and an unknown host is refused before any upload (real sshd)', async () => {
    const sshd = await startSshd()
    const home = mkdtempSync(join(tmpdir(), 'cvm-validate-home-'))
    try {
      const target = `${sshd.user}@127.0.0.1:${sshd.port}`
      // no pin and an empty home: the host is unknown
      const r = await cli(['validate', disk, '--host', target, '--identity', sshd.userKeyPath, '--out', join(dir, 'out2'), '--json'], {env: {HOME: home, SSH_AUTH_SOCK: ''}})
      expect(r.code).toBe(3)
      const {error} = JSON.parse(r.stdout) as {error: {message: string; hint: string}}
      expect(error.message).toMatch(/unknown/)
      expect(error.message).toContain(join(home, '.ssh', 'known_hosts'))
      expect(error.hint).toContain(`--host-key ${sshd.hostKeyFingerprint}`)
      // a known_hosts file given as --host-key is accepted, as build takes it: the run gets past the
      // connection (and fails later on the 1 KiB non-disk, a stage failure, not a refusal)
      const r2 = await cli(['validate', disk, '--host', target, '--host-key', sshd.knownHostsFile, '--identity', sshd.userKeyPath, '--out', join(dir, 'out3'), '--json', '--boot-timeout', '10'], {env: {HOME: home}, timeoutMs: 300_000})
      expect(r2.stdout).not.toMatch(/refusing to connect|unknown|not a SHA256 fingerprint/)
      expect(sshd.log()).toMatch(/Accepted publickey/)
    } finally {
      await sshd.stop()
      await rm(home, {recursive: true, force: true})
      await rm(dir, {recursive: true, force: true})
    }
  }, 360_000)
})
