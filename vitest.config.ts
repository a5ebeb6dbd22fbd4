import {defineConfig} from 'vitest/config'

// Test files run one at a time: the integration tests build kernels and boot QEMU on a 2-core machine.
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    // the end-to-end and boot tests set their own, longer timeouts
    hookTimeout: 1_800_000,
    reporters: ['default'],
  },
})
