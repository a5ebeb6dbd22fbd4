import {writeFileSync} from 'node:fs'
import {relative} from 'node:path'

import type {Reporter, TestModule} from 'vitest/node'

/**
 * Ends a run with each test file's wall time (its hooks included: a kernel build in beforeAll
 * counts), slowest first, then one closing line `tests: N passed, N failed, N skipped`: where the
 * suite's time goes, seen at the end of every run (docs/testing.md). With CVM_TEST_SUMMARY set it
 * goes to that file, which ./scripts/test prints after vitest's own summary, so that the closing
 * line is the run's last.
 */
export default class FileTimes implements Reporter {
  private started = Date.now()

  onTestRunStart(): void {
    this.started = Date.now()
  }

  onTestRunEnd(modules: readonly TestModule[]): void {
    const root = process.cwd()
    const rows = modules
      .map((m) => ({name: relative(root, m.moduleId), seconds: m.diagnostic().duration / 1000, state: m.state()}))
      .sort((a, b) => b.seconds - a.seconds)
    const counts = {passed: 0, failed: 0, skipped: 0}
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        const s = t.result().state
        if (s === 'passed') counts.passed++
        else if (s === 'failed') counts.failed++
        else counts.skipped++
      }
    }
    const out = [`\ntest files by wall time (${process.env.CVM_TEST_WORKERS ?? 3} at a time; ${((Date.now() - this.started) / 1000).toFixed(0)} s in all):`]
    for (const r of rows) out.push(`${r.seconds.toFixed(1).padStart(8)} s  ${r.state === 'passed' ? '      ' : r.state.padEnd(6)}  ${r.name}`)
    out.push('', `tests: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`)
    if (process.env.CVM_TEST_SUMMARY) writeFileSync(process.env.CVM_TEST_SUMMARY, out.join('\n') + '\n')
    else process.stdout.write(out.join('\n') + '\n')
  }
}
