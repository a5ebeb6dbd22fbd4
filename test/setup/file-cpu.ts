import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {createHash} from 'node:crypto'
import {join} from 'node:path'

import {afterAll} from 'vitest'

/**
 * Each test file's CPU time, for the file-times reporter (test/reporters/file-times.ts): the CPU
 * of this file's own process and of every process it started and reaped (make and gcc, QEMU,
 * mmdebstrap), read from /proc/self/stat when the file ends. Wall time alone says little when
 * three files share two cores; CPU seconds are what a file costs the run (docs/testing.md).
 * Files run in their own forked process (vitest's forks pool, isolate), so the figure is the file's.
 */
const dir = process.env.CVM_TEST_CPU_DIR

export function processCpuSeconds(stat = readFileSync('/proc/self/stat', 'utf8')): {self: number; children: number} {
  // the fields after the command name, which may hold spaces and parentheses: utime stime cutime cstime are 14-17
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const tick = 100 // USER_HZ: 100 on every Linux ABI Node runs on
  const at = (n: number) => Number(fields[n - 3]) / tick
  return {self: at(14) + at(15), children: at(16) + at(17)}
}

if (dir) {
  afterAll((suite) => {
    const file = 'filepath' in suite ? suite.filepath : undefined
    if (!file) return
    const cpu = processCpuSeconds()
    mkdirSync(dir, {recursive: true})
    writeFileSync(join(dir, `${createHash('sha256').update(file).digest('hex').slice(0, 16)}.json`), JSON.stringify({file, ...cpu}))
  })
}
