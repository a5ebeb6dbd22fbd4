import {existsSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {cli} from './helpers/cli.js'

// Issue 29 part 1: every option is judged where it enters, before any stage runs. On 7c688e3
// `build debian-12 --publish ftp://h/x` ran base through compile (10 minutes from an empty cache)
// before it said the target was wrong.

const work = mkdtempSync(join(tmpdir(), 'cvm-options-cli-'))
afterAll(() => rmSync(work, {recursive: true, force: true}))

describe('options are parsed before any work (the built binary)', () => {
  it('build with a publish target of an unknown kind exits 2 and writes nothing, not even the cache directory', async () => {
    const cache = join(work, 'cache')
    const r = await cli(['build', 'debian-12', '--cache-dir', cache, '--publish', 'ftp://h/x'])
    expect(r.code, r.stderr).toBe(2)
    expect(r.stderr).toMatch(/^cvm-image: --publish: publish target "ftp:\/\/h\/x": only directories and sftp:\/\/ are supported/)
    expect(existsSync(cache)).toBe(false)
  })

  it('build and plan list every bad option at once, as JSON for a pipeline', async () => {
    const cache = join(work, 'cache2')
    for (const command of ['build', 'plan']) {
      const r = await cli([command, 'debian-12', '--cache-dir', cache, '--host', 'epyc', '--host-key', join(work, 'no-known-hosts'), '--kernel-git', join(work, 'no-clone'), '--json'])
      expect(r.code, r.stderr).toBe(2)
      const {error} = JSON.parse(r.stdout) as {error: {message: string; details: string[]; exitCode: number}}
      expect(error.message).toBe('3 options are wrong')
      expect(error.details.map((d) => d.split(':')[0]).sort()).toEqual(['--host', '--host-key', '--kernel-git'])
      expect(existsSync(cache)).toBe(false)
    }
  })

  it('a bad option of a command that reads no recipe is refused by the same row (validate --host, publish --publish)', async () => {
    const image = join(work, 'disk.raw')
    writeFileSync(image, '')
    const v = await cli(['validate', image, '--host', 'epyc'])
    expect(v.code).toBe(2)
    expect(v.stderr).toMatch(/^cvm-image: --host: "epyc" is not an SSH address/)
    // a directory where the image goes is bad input (exit 2), not a bug (70), as oclif's own check made it
    const d = await cli(['validate', work])
    expect(d.code).toBe(2)
    expect(d.stderr).toMatch(/is not a file \(it is a directory\)/)
    const p = await cli(['publish', 'no-such-build', '--publish', 's3://bucket/x'])
    expect(p.code).toBe(2)
    expect(p.stderr).toMatch(/--publish: publish target "s3:\/\/bucket\/x"/)
  })

  it("publish's former names still work, with a warning naming the new one", async () => {
    const p = await cli(['publish', 'no-such-build', '--to', 's3://bucket/x'])
    expect(p.code).toBe(2)
    expect(p.stderr).toMatch(/"--to" flag has been deprecated\. Use "--publish" instead/)
    expect(p.stderr).toMatch(/--publish: publish target "s3:\/\/bucket\/x"/)
    const h = await cli(['publish', 'no-such-build', '--host-key', 'SHA256:short'])
    expect(h.code).toBe(2)
    expect(h.stderr).toMatch(/--publish-host-key: host key fingerprint "SHA256:short" is not a SHA256 fingerprint/)
  })

  it('a value from the options config file (CVM_IMAGE_CONFIG) is judged as a flag is, naming the file; a flag overrides it', async () => {
    const cache = join(work, 'cache-config')
    const config = join(work, 'config.yaml')
    writeFileSync(config, 'publish: ftp://h/x\n')
    const r = await cli(['build', 'debian-12', '--cache-dir', cache], {env: {CVM_IMAGE_CONFIG: config}})
    expect(r.code, r.stderr).toBe(2)
    expect(r.stderr).toContain(`cvm-image: publish (from ${config}): publish target "ftp://h/x"`)
    expect(existsSync(cache)).toBe(false)
    // a flag wins over the file: the refusal names the flag's value, not the file's
    const f = await cli(['build', 'debian-12', '--cache-dir', cache, '--publish', 's3://b/x'], {env: {CVM_IMAGE_CONFIG: config}})
    expect(f.code).toBe(2)
    expect(f.stderr).toContain('cvm-image: --publish: publish target "s3://b/x"')
    // plan takes no --publish: the file's value for it is not read
    const p = await cli(['plan', 'debian-12', '--cache-dir', cache, '--json'], {env: {CVM_IMAGE_CONFIG: config}})
    expect(p.code, p.stderr).toBe(0)
    writeFileSync(config, 'publsh: ./out\n')
    const u = await cli(['plan', 'debian-12', '--cache-dir', cache], {env: {CVM_IMAGE_CONFIG: config}})
    expect(u.code).toBe(2)
    expect(u.stderr).toContain(`cvm-image: ${config}:1:1: no option "publsh"`)
  })
})
