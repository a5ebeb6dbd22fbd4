import {lstat, readdir, readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {startSshd, type TestSshd} from '../../test/helpers/sshd.js'
import {openValidationHost} from './open-host.js'

// The server is a real OpenSSH on 127.0.0.1 whose sessions have a $TMPDIR of their own (sshd.tmpDir).
let sshd: TestSshd
const tmpEntries = async () => new Set((await readdir(sshd.tmpDir)).filter((n) => n.startsWith('cvm-validate-')))

describe('a process started on a remote validation host (real sshd on 127.0.0.1)', () => {
  beforeAll(async () => {
    sshd = await startSshd()
  })
  afterAll(async () => {
    await sshd?.stop()
  })

  it('keeps its pid file in a fresh 0700 directory with an unguessable name, kills by it, and leaves nothing', async () => {
    const host = await openValidationHost({host: `${sshd.user}@127.0.0.1:${sshd.port}`, hostKey: sshd.hostKeyFingerprint, identity: sshd.userKeyPath})
    const before = await tmpEntries()
    try {
      const proc = host.spawn('sleep', ['600'])
      let added: string[] = []
      for (let i = 0; i < 50 && added.length === 0; i++) {
        await new Promise((r) => setTimeout(r, 100))
        added = [...(await tmpEntries())].filter((n) => !before.has(n))
      }
      expect(added).toHaveLength(1)
      const [name] = added
      expect(name).toMatch(/^cvm-validate-[0-9a-f]{32}$/)
      const st = await lstat(join(sshd.tmpDir, name))
      expect(st.isDirectory()).toBe(true)
      expect(st.mode & 0o777).toBe(0o700)
      const pid = Number((await readFile(join(sshd.tmpDir, name, 'pid'), 'utf8')).trim())
      expect(pid).toBeGreaterThan(1)
      expect((await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')[0]).toBe('sleep')
      await proc.kill()
      expect(await proc.exited).not.toBe(0)
      await expect(lstat(`/proc/${pid}`)).rejects.toThrow()
      expect([...(await tmpEntries())].filter((n) => !before.has(n))).toEqual([])
    } finally {
      await host.cleanup()
    }
  }, 60_000)
})
