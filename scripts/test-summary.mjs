// Reads vitest's JSON report and prints each test file's wall time, slowest first, then one closing
// line "N passed, N failed, N skipped": where the suite's time goes, seen at the end of every run.
import {readFileSync} from 'node:fs'
import {relative} from 'node:path'

const [report, root] = process.argv.slice(2)
const r = JSON.parse(readFileSync(report, 'utf8'))
const files = r.testResults
  .map((f) => ({name: relative(root, f.name), seconds: (f.endTime - f.startTime) / 1000, status: f.status}))
  .sort((a, b) => b.seconds - a.seconds)
const wall = (Math.max(...r.testResults.map((f) => f.endTime)) - r.startTime) / 1000
console.log(`\ntest files by wall time (files run ${process.env.CVM_TEST_WORKERS ?? 3} at a time; ${wall.toFixed(0)} s in all):`)
for (const f of files) console.log(`${f.seconds.toFixed(1).padStart(8)} s  ${f.status === 'passed' ? '      ' : f.status.padEnd(6)}  ${f.name}`)
const skipped = r.numPendingTests + r.numTodoTests
console.log(`\ntests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`)
