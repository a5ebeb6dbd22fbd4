import {execFile} from 'node:child_process'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {describe, expect, it} from 'vitest'

import {repoRoot} from '../helpers/paths.js'

import {processCpuSeconds, watchStalls} from './file-cpu.js'

describe('the per-file figures of the test report (test/setup/file-cpu.ts)', () => {
  it('reads utime, stime, cutime and cstime from a /proc/<pid>/stat line whose command holds spaces and parentheses', () => {
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
    const stat = '4242 (node (a) b) S 1 4242 4242 0 -1 4194304 100 200 0 0 1234 56 7800 90 20 0 11 0 5 0 0'
    expect(processCpuSeconds(stat)).toEqual({self: 12.9, children: 78.9})
  })

  it('finds a synchronous block of the event loop, its length and the label in force when it began', async () => {
    const stalls = watchStalls(100)
    try {
      stalls.mark('idle')
      await new Promise((r) => setTimeout(r, 300))
      // an idle loop: nothing, or (on a loaded machine) a late tick far shorter than the block below
      expect(stalls.longest()?.seconds ?? 0).toBeLessThan(0.5)
      stalls.mark('blocking')
      const until = Date.now() + 1500
      while (Date.now() < until) {
        // a synchronous block, as an execFileSync would be
      }
      // the runner moves on in the same turn, before the timer can run
      stalls.mark('next')
      await new Promise((r) => setTimeout(r, 300))
      const s = stalls.longest()!
      expect(s.seconds).toBeGreaterThan(1.3)
      expect(s.seconds).toBeLessThan(3)
      expect(s.where).toBe('blocking')
    } finally {
      stalls.stop()
    }
  })

  it('finds a block at the very end, before any tick came after it', () => {
    const stalls = watchStalls(100)
    stalls.mark('last')
    const until = Date.now() + 600
    while (Date.now() < until) {
      // the file's last synchronous work
    }
    expect(stalls.longest()).toMatchObject({where: 'last'})
    expect(stalls.longest()!.seconds).toBeGreaterThan(0.45)
    stalls.stop()
  })
})

describe('the hang watchdog (test/setup/hang-watchdog.ts), in a child process of its own', () => {
  /** Runs `body` after starting a 2 s watchdog in a fresh node process; its exit and the report it left. */
  async function child(body: string): Promise<{code: number | null; signal: string | null; stderr: string; report: string | undefined}> {
    const dir = await mkdtemp(join(tmpdir(), 'cvm-watchdog-'))
    try {
      const script = join(dir, 'child.mts')
      const reportFile = join(dir, 'report.txt')
      await writeFile(
        script,
        `import {watchHang} from ${JSON.stringify(join(repoRoot, 'test', 'setup', 'hang-watchdog.ts'))}\n` +
          `const hang = watchHang({file: 'demo.test.ts', limitSeconds: 2, reportFile: ${JSON.stringify(reportFile)}})\n` +
          `hang.label('in "the demo test"')\n${body}\n`,
      )
      const r = await promisify(execFile)(process.execPath, ['--import', 'tsx', script], {cwd: repoRoot, timeout: 60_000}).then(
        (ok) => ({code: 0, signal: null, stderr: ok.stderr}),
        (e: {code: number | null; signal: string | null; stderr: string}) => ({code: e.code, signal: e.signal, stderr: e.stderr}),
      )
      return {...r, report: await readFile(reportFile, 'utf8').catch(() => undefined)}
    } finally {
      await rm(dir, {recursive: true, force: true})
    }
  }

  it('kills a process whose event loop stopped for good, and reports the test in force and where the main thread is', async () => {
    const r = await child(`setTimeout(() => { for (;;) {} }, 100)`)
    expect(r.signal).toBe('SIGKILL')
    expect(r.report).toMatch(/^cvm-image test watchdog: demo\.test\.ts: the event loop of its process \(pid \d+\) has not run for [2-9] s, in "the demo test"\./)
    expect(r.report).toMatch(/main thread wait channel: .*; system call: /)
    // the same report reaches stderr, where CI's log keeps it
    expect(r.stderr).toContain(r.report!.split('\n')[0])
  }, 90_000)

  it('leaves alone a process that waits 4 s without blocking, which exits by itself', async () => {
    const r = await child(`await new Promise((done) => setTimeout(done, 4000)); hang.label('done')`)
    expect(r).toMatchObject({code: 0, signal: null, report: undefined})
  }, 90_000)
})
