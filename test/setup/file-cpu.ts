import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {createHash} from 'node:crypto'
import {join, relative} from 'node:path'

import {afterAll, afterEach, beforeEach, expect} from 'vitest'

import {watchHang} from './hang-watchdog.js'

/**
 * Each test file's CPU time and longest event-loop stall, for the file-times reporter
 * (test/reporters/file-times.ts).
 *
 * CPU: this file's own process and every process it started and reaped (make and gcc, QEMU,
 * mmdebstrap), read from /proc/self/stat when the file ends. Wall time alone says little when
 * three files share two cores; CPU seconds are what a file costs the run (docs/testing.md).
 * Files run in their own forked process (vitest's forks pool, isolate), so the figure is the file's.
 *
 * Stall: the longest time this process ran synchronous code without returning to its event loop
 * (an execFileSync, a big synchronous hash or copy), and the test or hook it happened in. While a file's
 * process is blocked no test timeout can fire and nothing reaches the reporter; vitest 3 failed a
 * green run when a block outlasted its fixed 60 s worker message deadline (docs/testing.md).
 *
 * Hang: a block that does not end (a deadlock in native code) would hold the whole run until CI's
 * limit, silently. A watchdog thread, whose own event loop goes on, ends such a process after
 * CVM_TEST_HANG_SECONDS (300) with a report of where it stopped (docs/testing.md "Hangs").
 */
const dir = process.env.CVM_TEST_CPU_DIR

export function processCpuSeconds(stat = readFileSync('/proc/self/stat', 'utf8')): {self: number; children: number} {
  // the fields after the command name, which may hold spaces and parentheses: utime stime cutime cstime are 14-17
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const tick = 100 // USER_HZ: 100 on every Linux ABI Node runs on
  const at = (n: number) => Number(fields[n - 3]) / tick
  return {self: at(14) + at(15), children: at(16) + at(17)}
}

export interface Stall {
  /** at least this long: the loop was blocked for between this and one period more */
  seconds: number
  /** the test it happened in, or the hook and the test next to it */
  where: string
}

/**
 * Watches the event loop with a timer every `periodMs`: a tick later than its period by more than
 * `periodMs` means the loop was blocked for at least the delay. Keeps the longest, with the label
 * that was in force when it began: `mark(label)` is called as the file moves from test to test,
 * and those calls that follow a block in the same turn (the runner goes on in promise callbacks
 * before the timer can run) carry later times, so they are not taken for its place.
 */
export function watchStalls(periodMs = 100, now: () => number = () => performance.now()): {mark: (label: string) => void; longest: () => Stall | undefined; stop: () => void} {
  let last = now()
  let longest: Stall | undefined
  let labels = [{at: last, label: "in the file's top level or a beforeAll hook, before the first test"}]
  const labelAt = (time: number) => labels.reduce((l, x) => (x.at <= time ? x.label : l), labels[0].label)
  const sample = () => {
    const t = now()
    const blocked = (t - last - periodMs) / 1000
    // the block began before the tick that should have come at last + periodMs
    if (blocked * 1000 > periodMs && (!longest || blocked > longest.seconds)) longest = {seconds: blocked, where: labelAt(last + periodMs)}
    last = t
    labels = [{at: t, label: labels[labels.length - 1].label}]
  }
  const timer = setInterval(sample, periodMs)
  timer.unref()
  return {
    mark: (label) => labels.push({at: now(), label}),
    // a block just before the file ends has had no tick yet: look once more
    longest: () => (sample(), longest),
    stop: () => clearInterval(timer),
  }
}

/** Where a test file's figures go in CVM_TEST_CPU_DIR: `<key>.json`, and `<key>.hang.txt` if the watchdog ended it. */
function fileKey(file: string): string {
  return createHash('sha256').update(file).digest('hex').slice(0, 16)
}

if (dir) {
  const stalls = watchStalls()
  // the file this process runs (vitest sets it before the setup files run)
  const testPath = expect.getState().testPath
  const file = testPath ? relative(process.cwd(), testPath) : '(a test file)'
  mkdirSync(dir, {recursive: true})
  const hang = watchHang({file, limitSeconds: Number(process.env.CVM_TEST_HANG_SECONDS ?? 300), reportFile: join(dir, `${fileKey(file)}.hang.txt`)})
  const mark = (label: string) => {
    stalls.mark(label)
    hang.label(label)
  }
  // a test's own hooks and body run between these two; anything else is a beforeAll/afterAll hook or the file's top level
  beforeEach(({task}) => mark(`in "${task.fullName}"`))
  afterEach(({task}) => mark(`in a beforeAll/afterAll hook, after "${task.fullName}"`))
  afterAll(async ({}, suite) => {
    const stall = stalls.longest()
    stalls.stop()
    await hang.stop()
    const file = 'filepath' in suite ? suite.filepath : undefined
    if (!file) return
    const cpu = processCpuSeconds()
    writeFileSync(join(dir, `${fileKey(file)}.json`), JSON.stringify({file, ...cpu, stall}))
  })
}
