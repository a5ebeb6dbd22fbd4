import {execFile} from 'node:child_process'
import {chmodSync, existsSync, writeFileSync} from 'node:fs'
import {chmod, mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {afterAll, beforeAll, describe, expect, it, vi} from 'vitest'

import type {PublishResult} from '../src/publish/index.js'
import {makeBuildRecordFixture} from './helpers/build-record-fixture.js'
import {repoRoot} from './helpers/paths.js'
import {startSshd, type TestSshd} from './helpers/sshd.js'
import {ensureUnprivilegedUser, runAs, unprivilegedDir} from './helpers/unprivileged.js'

// each test hashes and copies GiB-sized disks: on a loaded 2-core machine that takes more than the default minute
vi.setConfig({testTimeout: 240_000})

const exec = promisify(execFile)
const bin = join(repoRoot, 'bin', 'run.js')

async function cli(args: string[]): Promise<{code: number; stdout: string; stderr: string}> {
  try {
    const r = await exec(process.execPath, [bin, ...args], {cwd: repoRoot, maxBuffer: 16 * 1024 * 1024})
    return {code: 0, stdout: r.stdout, stderr: r.stderr}
  } catch (e) {
    const err = e as {code: number; stdout: string; stderr: string}
    return {code: err.code, stdout: err.stdout, stderr: err.stderr}
  }
}

let work: string
let cache: string
let sshd: TestSshd

beforeAll(async () => {
  if (!existsSync(join(repoRoot, 'dist', 'commands', 'publish.js'))) throw new Error('dist/ is not built: run scripts/test (or npx tsc -p .) first')
  work = await mkdtemp(join(tmpdir(), 'cvm-publish-cli-'))
  cache = join(work, 'cache')
  sshd = await startSshd()
  await makeBuildRecordFixture(cache, {recipeId: 'cli-passed', seed: 'cli', formats: ['raw', 'gce']})
  await makeBuildRecordFixture(cache, {recipeId: 'cli-unvalidated', seed: 'cli-u', validation: 'missing', formats: ['qcow2']})
})

afterAll(async () => {
  await sshd?.stop()
  if (work) await rm(work, {recursive: true, force: true})
})

describe('cvm-image publish (the built binary)', () => {
  it('publishes a recipe\'s last build to a directory and prints the typed result with --json; again is a no-op', async () => {
    const out = join(work, 'out')
    const r = await cli(['publish', 'cli-passed', '--cache-dir', cache, '--publish', `dir:${out}`, '--json'])
    expect(r.code, r.stderr).toBe(0)
    const res = JSON.parse(r.stdout) as PublishResult
    expect(res.location).toBe(`dir:${join(out, 'cli-passed', res.version)}`)
    expect(res.files.map((f) => f.name)).toEqual(['disk.raw', `cli-passed-${res.version}.tar.gz`, 'provenance.intoto.json', 'SHA256SUMS', 'manifest.json'])
    expect(res.manifest.gce.guestOsFeatures.map((g) => g.type)).toContain('UEFI_COMPATIBLE')
    const again = JSON.parse((await cli(['publish', join(cache, 'builds', 'cli-passed.json'), '--cache-dir', cache, '--publish', `dir:${out}`, '--json'])).stdout) as PublishResult
    expect(again.unchanged).toBe(true)
    expect(again.bytesUploaded).toBe(0)
  })

  it('publishes over SFTP with --publish-host-key and --publish-identity', async () => {
    const dest = join(work, 'sftp')
    const r = await cli(['publish', 'cli-passed', '--cache-dir', cache, '--publish', `sftp://${sshd.user}@127.0.0.1:${sshd.port}${dest}`, '--publish-host-key', sshd.hostKeyFingerprint, '--publish-identity', sshd.userKeyPath, '--json'])
    expect(r.code, r.stderr).toBe(0)
    const res = JSON.parse(r.stdout) as PublishResult
    expect(existsSync(join(dest, 'cli-passed', res.version, 'manifest.json'))).toBe(true)
  })

  it('exits 4 for an unvalidated build, 3 for an unknown host key, 2 for a missing build record', async () => {
    const u = await cli(['publish', 'cli-unvalidated', '--cache-dir', cache, '--publish', `dir:${join(work, 'out')}`, '--json'])
    expect(u.code).toBe(4)
    expect(JSON.parse(u.stdout).error.hint).toContain('--allow-unvalidated')
    const known = join(work, 'nobody_known_hosts')
    writeFileSync(known, '')
    const h = await cli(['publish', 'cli-passed', '--cache-dir', cache, '--publish', `sftp://${sshd.user}@127.0.0.1:${sshd.port}${join(work, 'x')}`, '--publish-host-key', known, '--publish-identity', sshd.userKeyPath])
    expect(h.code).toBe(3)
    expect(h.stderr).toContain(sshd.hostKeyFingerprint)
    const m = await cli(['publish', 'no-such-recipe', '--cache-dir', cache])
    expect(m.code).toBe(2)
    expect(m.stderr).toMatch(/no build record/)
  })
})

describe('a publish target that cannot be written ends in exit 1 (failed transport), naming the target and the reason', () => {
  const noStack = (text: string) => expect(text).not.toMatch(/^\s+at .*\(.*:\d+:\d+\)$/m)

  it('a target whose parent is a regular file: ENOTDIR', async () => {
    const file = join(work, 'a-regular-file')
    writeFileSync(file, 'not a directory\n')
    const target = join(file, 'releases')
    const r = await cli(['publish', 'cli-passed', '--cache-dir', cache, '--publish', `dir:${target}`])
    expect(r.code, r.stderr).toBe(1)
    expect(r.stderr).toContain(`cannot publish to dir:${join(target, 'cli-passed')}`)
    expect(r.stderr).toMatch(/ENOTDIR: .*a-regular-file is not a directory/)
    noStack(r.stderr)
    const j = await cli(['publish', 'cli-passed', '--cache-dir', cache, '--publish', `dir:${target}`, '--json'])
    expect(j.code).toBe(1)
    expect(JSON.parse(j.stdout).error).toMatchObject({exitCode: 1, message: expect.stringMatching(/ENOTDIR/)})
  })

  it('a directory made read-only (0555), published to by an unprivileged user: EACCES', async () => {
    // root writes through 0555, so the case is run as the unprivileged test user (as test/assemble.test.ts runs assemble)
    const user = ensureUnprivilegedUser()
    const home = unprivilegedDir(join(work, 'unprivileged'), user)
    await chmod(work, 0o755)
    const ucache = unprivilegedDir(join(home, 'cache'), user)
    const fx = await makeBuildRecordFixture(ucache, {recipeId: 'ro-target', seed: 'cli', formats: ['raw']})
    unprivilegedDir(join(ucache, 'publish'), user)
    const readOnly = unprivilegedDir(join(home, 'read-only'), user)
    chmodSync(readOnly, 0o555)
    const r = await runAs(user, process.execPath, [bin, 'publish', fx.path, '--cache-dir', ucache, '--publish', `dir:${readOnly}`], {cwd: repoRoot, reject: false})
    expect(r.exitCode, r.stderr).toBe(1)
    expect(r.stderr).toContain(`cannot publish to dir:${join(readOnly, 'ro-target')}`)
    expect(r.stderr).toMatch(/EACCES/)
    expect(r.stderr).toMatch(/hint: the target is not writable by this user/)
    noStack(r.stderr)
  })

  it('an SFTP target the server will not create: the SFTP status as the reason', async () => {
    const target = `sftp://${sshd.user}@127.0.0.1:${sshd.port}/proc/cvm-image-no-such-place`
    const r = await cli(['publish', 'cli-passed', '--cache-dir', cache, '--publish', target, '--publish-host-key', sshd.hostKeyFingerprint, '--publish-identity', sshd.userKeyPath])
    expect(r.code, r.stderr).toBe(1)
    expect(r.stderr).toMatch(/cannot publish to sftp:\/\/.*\/proc\/cvm-image-no-such-place\/cli-passed\/\S+: (ENOENT|EACCES|EIO)/)
    noStack(r.stderr)
  })
})
