import {describe, expect, it} from 'vitest'

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
