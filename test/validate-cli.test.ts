import {execFile} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {describe, expect, it} from 'vitest'

import {repoRoot} from './helpers/paths.js'

const exec = promisify(execFile)
const bin = join(repoRoot, 'bin', 'run.js')

async function cli(args: string[]): Promise<{code: number; stdout: string; stderr: string}> {
  try {
    const r = await exec(process.execPath, [bin, ...args], {cwd: repoRoot})
    return {code: 0, stdout: r.stdout, stderr: r.stderr}
  } catch (e) {
    const err = e as {code: number; stdout: string; stderr: string}
    return {code: err.code, stdout: err.stdout, stderr: err.stderr}
  }
}

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

  it('--host without a pinned host key is refused as a usage error', async () => {
    const r = await cli(['validate', disk, '--host', 'root@127.0.0.1', '--json'])
    expect(r.code).toBe(2)
    expect(JSON.parse(r.stdout).error.message).toMatch(/needs its host key pinned/)
    rmSync(dir, {recursive: true, force: true})
  }, 60_000)
})
