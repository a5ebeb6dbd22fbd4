import {describe, expect, it} from 'vitest'

import {bounceOutcome, DIRECT_IO_CASES, nvmeIntegrityOutcome, parseDirectIo} from './checks.js'

const okLines = DIRECT_IO_CASES.flatMap((c) => ['/dev/nvme1n1', '/var/tmp/cvm-direct-io.bin'].map((t) => `ok ${t} bs=${c.bs} count=${c.count} off=${c.offset} sha256=ab`))

describe('O_DIRECT integrity and bounce evidence', () => {
  it('passes only when every case read back equal', () => {
    const io = parseDirectIo(['swiotlb nslabs=32768 idle_used=0 hiwater_before=none', ...okLines, 'sampled 134 251', 'hiwater_after=none'].join('\n'))
    expect(nvmeIntegrityOutcome(io).verdict).toBe('pass')
    expect(bounceOutcome(io)).toMatchObject({verdict: 'pass'})
    expect(bounceOutcome(io).evidence).toMatch(/peak 134 over 251 samples/)
  })

  it('fails on one mismatching read-back, naming it', () => {
    const lines = [...okLines.slice(1), 'MISMATCH /dev/nvme1n1 bs=512 count=1 off=3584 want=aa got=bb']
    const o = nvmeIntegrityOutcome(parseDirectIo(lines.join('\n')))
    expect(o.verdict).toBe('fail')
    expect(o.evidence).toMatch(/MISMATCH \/dev\/nvme1n1 bs=512/)
  })

  it('fails when cases did not run (a dd error)', () => {
    expect(nvmeIntegrityOutcome(parseDirectIo(okLines.slice(0, 3).join('\n') + "\ndd: error writing '/dev/nvme1n1': Invalid argument")).verdict).toBe('fail')
  })

  it('bounce counters that never moved fail; a moved hiwater passes', () => {
    expect(bounceOutcome(parseDirectIo('swiotlb nslabs=32768 idle_used=0 hiwater_before=0\nsampled 0 300\nhiwater_after=0')).verdict).toBe('fail')
    expect(bounceOutcome(parseDirectIo('swiotlb nslabs=32768 idle_used=0 hiwater_before=0\nsampled 0 3\nhiwater_after=96')).verdict).toBe('pass')
    expect(bounceOutcome(parseDirectIo('swiotlb nslabs=none idle_used=none hiwater_before=none')).verdict).toBe('fail')
  })
})
