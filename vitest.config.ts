import {relative} from 'node:path'

import {BaseSequencer, type TestSpecification} from 'vitest/node'
import {defineConfig} from 'vitest/config'

/**
 * The files that build a kernel or a whole image, longest chain first (measured on a fresh 2-core
 * machine: docs/testing.md). A CI run starts from an empty cache, where vitest has no durations to
 * go by, so they are started first and the short files fill the cores around them; a file that
 * needs an artifact another file is building waits on that stage's lock and then takes its result.
 */
const HEAVY_FIRST = [
  'test/backport-5.4-control.test.ts',
  'test/kernel-build.test.ts', // the debian-12 kernel (6.1): most of the image tests take it from the cache
  'test/backport-5.4.test.ts',
  'test/debian-13.test.ts', // its own base and 6.12 kernel (issue #28)
  'test/rhel-family.test.ts',
  'test/backport-5.8.test.ts',
  'test/e2e.test.ts',
  'test/disk-base.test.ts',
  'test/fault-injection.test.ts',
  'test/assemble.test.ts',
  'test/validate-remote.test.ts',
  'test/validate-boot.test.ts',
  'test/distro-holds.test.ts',
]

class HeavyFirst extends BaseSequencer {
  async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (f: TestSpecification) => {
      const i = HEAVY_FIRST.indexOf(relative(f.project.config.root, f.moduleId))
      return i === -1 ? HEAVY_FIRST.length : i
    }
    const rest = await super.sort(files)
    return [...rest].sort((a, b) => rank(a) - rank(b))
  }
}

// Files run in parallel on CVM_TEST_WORKERS forks (default 3 on 2 cores: a kernel compile, a TCG
// guest and the single-threaded stages of another build overlap; none of them alone keeps both
// cores busy). CVM_TEST_WORKERS=1 runs them one at a time.
const workers = Number(process.env.CVM_TEST_WORKERS ?? 3)

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: workers > 1,
    maxWorkers: workers,
    sequence: {sequencer: HeavyFirst},
    // a test that shares 2 cores with two kernel compiles runs slower than alone
    testTimeout: 180_000,
    // the end-to-end and boot tests set their own, longer timeouts
    hookTimeout: 3_600_000,
    // the default view, then each file's time, slowest first, and a 'N passed, N failed' line
    reporters: ['default', './test/reporters/file-times.ts'],
    // each file's CPU seconds for that report (only with CVM_TEST_CPU_DIR set: ./scripts/test sets it)
    setupFiles: ['./test/setup/file-cpu.ts'],
  },
})
