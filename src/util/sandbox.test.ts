import {execFile, execFileSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {createServer, type AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {afterAll, describe, expect, it} from 'vitest'

import {runConfined} from './sandbox.js'

/**
 * The converter's sandbox on its own, without the header check in front of it: what a parser bug or
 * a missed reference would meet.
 */

const dir = mkdtempSync(join(tmpdir(), 'cvm-sandbox-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))
const CANARY = `sandbox-canary-${process.pid}-${Date.now()}`

describe('runConfined', () => {
  it('sees /usr, a minimal /dev and its binds, nothing else of the host', async () => {
    writeFileSync(join(dir, 'in.txt'), 'input\n')
    writeFileSync(join(dir, 'out.txt'), '')
    const script = 'ls -A / | tr "\\n" " "; echo; cat /in/in.txt; echo written > /out/out.txt; for f in /etc/passwd /etc/hostname /root /home /var /tmp /proc/self ' + dir + ' /dev/vda /dev/sda; do test -e $f && echo "visible: $f"; done; true'
    const r = await runConfined('sh', ['-c', script], {readOnly: [{host: join(dir, 'in.txt'), inside: '/in/in.txt'}], writable: [{host: join(dir, 'out.txt'), inside: '/out/out.txt'}]})
    expect(r.stderr).toBe('')
    expect(r.exitCode).toBe(0)
    const [root, ...rest] = r.stdout.split('\n')
    expect(root.trim().split(' ').sort()).toEqual(expect.arrayContaining(['dev', 'in', 'out', 'usr']))
    expect(root.trim().split(' ').filter((n) => !['bin', 'dev', 'in', 'lib', 'lib32', 'lib64', 'libx32', 'out', 'sbin', 'usr'].includes(n))).toEqual([])
    expect(rest.filter((l) => l.startsWith('visible'))).toEqual([])
    expect(rest).toContain('input')
    expect(readFileSync(join(dir, 'out.txt'), 'utf8')).toBe('written\n')
  })

  it('stops qemu-img following a backing file, were the header check to miss one', async () => {
    writeFileSync(join(dir, 'canary.raw'), Buffer.concat([Buffer.from(CANARY), Buffer.alloc(1024 * 1024 - CANARY.length)]))
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', join(dir, 'canary.raw'), '-F', 'raw', join(dir, 'backed.qcow2')])
    writeFileSync(join(dir, 'disk.raw'), '')
    const r = await runConfined('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', '/in/base.qcow2', '/out/disk.raw'], {readOnly: [{host: join(dir, 'backed.qcow2'), inside: '/in/base.qcow2'}], writable: [{host: join(dir, 'disk.raw'), inside: '/out/disk.raw'}]})
    expect(r.exitCode).not.toBe(0)
    expect(r.stderr).toContain(`Could not open backing file: Could not open '${join(dir, 'canary.raw')}': No such file or directory`)
    expect(readFileSync(join(dir, 'disk.raw')).includes(Buffer.from(CANARY))).toBe(false)
  })

  it('has no network: a port listening on the host loopback cannot be reached', async () => {
    const server = createServer((socket) => socket.end('reached\n'))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as AddressInfo).port
    try {
      const probe = `exec 3<>/dev/tcp/127.0.0.1/${port} && cat <&3`
      // the probe works outside, so its failure inside says something
      expect((await promisify(execFile)('bash', ['-c', probe])).stdout).toBe('reached\n')
      const r = await runConfined('bash', ['-c', probe], {readOnly: [], writable: []})
      expect(r.exitCode).not.toBe(0)
      expect(r.stdout).toBe('')
      expect(r.stderr).toMatch(/Connection refused|Network is unreachable/)
    } finally {
      server.close()
    }
  })
})
