import {existsSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join, relative} from 'node:path'

import type {Reporter, TestModule} from 'vitest/node'

import type {Stall} from '../setup/file-cpu.js'

/**
 * Ends a run with each test file's wall time (its hooks included: a kernel build in beforeAll
 * counts), slowest first, with its CPU time (itself and every process it reaped, from
 * test/setup/file-cpu.ts, when CVM_TEST_CPU_DIR is set), the longest event-loop stalls (same
 * source), then one closing line `tests: N passed, N failed, N skipped`: where the
 * suite's time goes, seen at the end of every run (docs/testing.md). With CVM_TEST_SUMMARY set it
 * goes to that file, which ./scripts/test prints after vitest's own summary, so that the closing
 * line is the run's last.
 */
export default class FileTimes implements Reporter {
  private started = Date.now()
  /** the files running now, and since when: written to $CVM_TEST_SUMMARY.running, which .ci/run prints if it has to stop the run */
  private running = new Map<string, number>()

  onTestRunStart(): void {
    this.started = Date.now()
  }

  onTestModuleStart(m: TestModule): void {
    this.running.set(relative(process.cwd(), m.moduleId), Date.now())
    this.writeRunning()
  }

  onTestModuleEnd(m: TestModule): void {
    this.running.delete(relative(process.cwd(), m.moduleId))
    this.writeRunning()
  }

  private writeRunning(): void {
    if (!process.env.CVM_TEST_SUMMARY) return
    const now = Date.now()
    const lines = [...this.running].map(([name, since]) => `${((now - since) / 1000).toFixed(0).padStart(6)} s so far  ${name}`)
    writeFileSync(`${process.env.CVM_TEST_SUMMARY}.running`, lines.join('\n') + (lines.length ? '\n' : ''))
  }

  onTestRunEnd(modules: readonly TestModule[]): void {
    const root = process.cwd()
    const {cpu, stalls, hangs} = readCpu(process.env.CVM_TEST_CPU_DIR)
    const rows = modules
      .map((m) => ({name: relative(root, m.moduleId), seconds: m.diagnostic().duration / 1000, cpu: cpu.get(m.moduleId), state: m.state()}))
      .sort((a, b) => b.seconds - a.seconds)
    const counts = {passed: 0, failed: 0, skipped: 0}
    for (const m of modules) {
      let failed = 0
      for (const t of m.children.allTests()) {
        const s = t.result().state
        if (s === 'passed') counts.passed++
        else if (s === 'failed') failed++
        else counts.skipped++
      }
      // a file that failed outside its tests (a hook, its import), or never finished (its process
      // died: the watchdog ends a hung one), counts once: the line never says 0 failed for a failed run
      counts.failed += failed || (m.state() === 'passed' || m.state() === 'skipped' ? 0 : 1)
    }
    const total = rows.reduce((a, r) => a + (r.cpu ?? 0), 0)
    const out = [
      `\ntest files by wall time (${process.env.CVM_TEST_WORKERS ?? 3} at a time; ${((Date.now() - this.started) / 1000).toFixed(0)} s in all${cpu.size ? `; ${total.toFixed(0)} CPU s measured in ${cpu.size} files` : ''}):`,
      `${'wall'.padStart(10)}  ${'CPU'.padStart(8)}`,
    ]
    for (const r of rows) out.push(`${r.seconds.toFixed(1).padStart(8)} s  ${r.cpu === undefined ? '       -' : `${r.cpu.toFixed(0).padStart(6)} s`}  ${r.state === 'passed' ? '      ' : r.state.padEnd(6)}  ${r.name}`)
    // the longest, and any other over a second: a file's process blocked in synchronous work can neither time out nor report
    const worst = [...stalls].sort((a, b) => b[1].seconds - a[1].seconds).filter(([, st], i) => i === 0 || st.seconds >= 1).slice(0, 5)
    if (worst.length) out.push('', 'longest event-loop stalls (synchronous work in a test file\'s process: no timeout fires and nothing is reported meanwhile):')
    for (const [file, st] of worst) out.push(`${st.seconds.toFixed(1).padStart(8)} s  ${relative(root, file)} ${st.where}`)
    // files the watchdog (test/setup/hang-watchdog.ts) ended: blocked for good, with where they stopped
    if (hangs.length) out.push('', 'test files ended by the watchdog (their event loop stopped for good):', ...hangs)
    out.push('', `tests: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`)
    if (process.env.CVM_TEST_SUMMARY) writeFileSync(process.env.CVM_TEST_SUMMARY, out.join('\n') + '\n')
    else process.stdout.write(out.join('\n') + '\n')
  }
}

/** test file path -> CPU seconds and longest stall, from the files test/setup/file-cpu.ts wrote. */
function readCpu(dir: string | undefined): {cpu: Map<string, number>; stalls: Map<string, Stall>; hangs: string[]} {
  const cpu = new Map<string, number>()
  const stalls = new Map<string, Stall>()
  const hangs: string[] = []
  if (!dir || !existsSync(dir)) return {cpu, stalls, hangs}
  for (const f of readdirSync(dir)) {
    if (f.endsWith('.hang.txt')) {
      hangs.push(readFileSync(join(dir, f), 'utf8').trimEnd())
      continue
    }
    const r = JSON.parse(readFileSync(join(dir, f), 'utf8')) as {file: string; self: number; children: number; stall?: Stall}
    cpu.set(r.file, r.self + r.children)
    if (r.stall) stalls.set(r.file, r.stall)
  }
  return {cpu, stalls, hangs}
}
