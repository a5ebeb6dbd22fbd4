import {execa} from 'execa'
import {existsSync, readFileSync} from 'node:fs'
import {mkdtemp, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterAll, describe, expect, it} from 'vitest'

import {buildProbe, describeFailure, parseProbeOutput, probeArgv, probeOutcome, PROBE_REMOTE_PATH, PROBE_SOURCE} from './nvme-probe.js'

const here = dirname(fileURLToPath(import.meta.url))
const recorded = (name: string) => readFileSync(join(here, 'probe', 'testdata', name), 'utf8')
// recorded in the guest by /var/tmp/rig/boot-probe.sh (QEMU TCG, -device nvme, swiotlb=force)
const PASS_61 = recorded('linux-6.1.0-56-cloud-swiotlb-force.txt')
const FAIL_54 = recorded('linux-5.4.59-swiotlb-force.txt')

describe('parseProbeOutput / probeOutcome', () => {
  it('6.1 with swiotlb=force: all 384 cases pass, both layouts proven by PFN', () => {
    const run = parseProbeOutput(PASS_61, 0)
    expect(run.header).toMatchObject({target: '/dev/nvme0n1', type: 'blockdev', cases: 384, mode: 'write-read'})
    expect(run.layouts.map((l) => [l.layout, l.ok, l.phys])).toEqual([
      ['contig', 192, 'contiguous'],
      ['scattered', 192, 'scattered'],
    ])
    expect(run.total).toMatchObject({cases: 384, ok: 384, failed: 0, elapsedMs: 988})
    const o = probeOutcome(run)
    expect(o.verdict).toBe('pass')
    expect(o.evidence).toMatch(/^384\/384 O_DIRECT cases intact on \/dev\/nvme0n1/)
    expect(o.evidence).toContain('contig 192/192, scattered 192/192')
    expect(o.evidence).not.toContain('not proven')
  })

  it('unpatched 5.4.59 with swiotlb=force: fails, naming write-side and read-side counts per layout and the first cases', () => {
    const run = parseProbeOutput(FAIL_54, 1)
    expect(run.total!.failed).toBeGreaterThan(100)
    expect(run.failures).toHaveLength(run.total!.failed)
    for (const l of run.layouts) expect(l.ok + l.failed).toBe(192)
    const byLayout = Object.fromEntries(run.layouts.map((l) => [l.layout, [l.ok, l.counts['write-error'], l.counts['write-corrupt'], l.counts['read-error'], l.counts['read-corrupt']]]))
    expect(byLayout).toEqual({contig: [141, 31, 4, 32, 0], scattered: [28, 67, 62, 64, 68]})
    const wc = run.failures.filter((f) => f.kinds.includes('write-corrupt'))
    expect(wc.length).toBe(run.total!.counts['write-corrupt'])
    // a page-aligned buffer is no shelter: a 2560-byte write from offset 0 lost its second half
    expect(wc[0]).toMatchObject({layout: 'contig', woff: 0, size: 2560, first: 2048})
    const o = probeOutcome(run)
    expect(o.verdict).toBe('fail')
    expect(o.evidence).toMatch(new RegExp(`^${run.total!.failed} of 384 O_DIRECT cases from in-page offsets failed \\(\\d+ write-side: ${run.total!.counts['write-corrupt']} silent write corruptions`))
    expect(o.evidence).toMatch(/contig: \d+\/192 ok, write-side/)
    expect(o.evidence).toMatch(/scattered: \d+\/192 ok/)
    // the first case of each layout and kind: the reader sees every way it failed
    expect(o.evidence).toContain(`First: ${describeFailure(run.failures[0])}; contig woff=0 roff=2048 size=4608: read-error (EIO); contig woff=512 roff=2560 size=4608: write-error (EIO) + read-error; scattered`)
    expect(o.evidence).toMatch(/scattered woff=\d+ roff=\d+ size=\d+: read-corrupt at byte/)
    expect(o.evidence).toMatch(/\.\.\. 210 more$/)
    expect(o.evidence).toContain('contig: 141/192 ok, write-side 31 write-error + 4 write-corrupt, read-side 32 read-error')
  })

  it('a FAIL line: fields, hex bytes, errno, and its description', () => {
    const run = parseProbeOutput(
      [
        'FAIL layout=contig woff=512 roff=2560 size=1024 case=25 kind=write-corrupt kinds=write-corrupt,read-corrupt first=0 want=0x1f got=0x00 ndiff=1000',
        'FAIL layout=scattered woff=3584 roff=512 size=8192 case=359 kind=read-error kinds=read-error first=-1 errno=EIO',
      ].join('\n'),
    )
    expect(run.failures[0]).toMatchObject({layout: 'contig', woff: 512, roff: 2560, size: 1024, case: 25, kind: 'write-corrupt', kinds: ['write-corrupt', 'read-corrupt'], first: 0, want: 0x1f, got: 0, ndiff: 1000})
    expect(describeFailure(run.failures[0])).toBe('contig woff=512 roff=2560 size=1024: write-corrupt at byte 0 (want 0x1f, got 0x00, 1000 bytes differ) + read-corrupt')
    expect(describeFailure(run.failures[1])).toBe('scattered woff=3584 roff=512 size=8192: read-error (EIO)')
  })

  it('a setup error (exit 2) fails with its message', () => {
    const o = probeOutcome(parseProbeOutput('ERROR msg=no_disk_with_serial_cvmscratch_in_/sys/block\n', 2))
    expect(o).toEqual({verdict: 'fail', evidence: 'the NVMe offset probe could not run: no disk with serial cvmscratch in /sys/block (exit 2)'})
  })

  it('output cut before TOTAL (guest hung, SSH dropped) fails and says how far it got', () => {
    const cut = PASS_61.split('\n').slice(0, 3).join('\n') + '\nsh: line 1: 1234 Killed\n'
    const o = probeOutcome(parseProbeOutput(cut, 137))
    expect(o.verdict).toBe('fail')
    expect(o.evidence).toMatch(/stopped before its TOTAL line \(exit 137; 1 of 2 layouts done, 0 failing cases so far; sh: line 1: 1234 Killed\)/)
  })

  it('a TOTAL with fewer cases than 384 is no pass', () => {
    const one = PASS_61.split('\n').filter((l) => !/layout=scattered/.test(l)).join('\n').replace(/TOTAL cases=384 ok=384/, 'TOTAL cases=192 ok=192')
    expect(probeOutcome(parseProbeOutput(one, 0))).toMatchObject({verdict: 'fail', evidence: expect.stringMatching(/ran 192 of 384 cases/)})
  })

  it('a pass whose buffers could not be proven by PFN says so', () => {
    const o = probeOutcome(parseProbeOutput(PASS_61.replace('phys=scattered', 'phys=unknown'), 0))
    expect(o.verdict).toBe('pass')
    expect(o.evidence).toContain('buffer layout not proven by PFN (scattered: phys=unknown)')
  })

  it('argv: by serial by default, or a device', () => {
    expect(probeArgv()).toEqual([PROBE_REMOTE_PATH, '--serial', 'cvmscratch'])
    expect(probeArgv({device: '/dev/nvme1n1', remotePath: '/run/p'})).toEqual(['/run/p', '/dev/nvme1n1'])
  })
})

describe('buildProbe (real gcc)', () => {
  const dirs: string[] = []
  afterAll(async () => {
    for (const d of dirs) await rm(d, {recursive: true, force: true})
  })
  // on the disk, not tmpfs: the O_DIRECT target must be a file on a real block device
  const scratchRoot = existsSync('/var/tmp') ? '/var/tmp' : tmpdir()

  it('builds once per source digest, and all 384 cases pass on a plain file opened with O_DIRECT', async () => {
    const cache = await mkdtemp(join(tmpdir(), 'probe-cache-'))
    const work = await mkdtemp(join(scratchRoot, 'probe-target-'))
    dirs.push(cache, work)
    const bin = await buildProbe(cache)
    expect(bin.built).toBe(true)
    expect(bin.path).toBe(join(cache, 'nvme-offset-probe', bin.sourceSha256, 'nvme-offset-probe'))
    expect((await execa('file', [bin.path], {reject: false})).stdout).toMatch(/statically linked|static-pie/)
    const again = await buildProbe(cache)
    expect(again).toEqual({...bin, built: false})

    const target = join(work, 'scratch.img')
    await writeFile(target, '')
    const r = await execa(bin.path, [target], {reject: false})
    const run = parseProbeOutput(r.stdout, r.exitCode)
    expect(run.header).toMatchObject({type: 'file', cases: 384})
    expect(run.failures).toEqual([])
    expect(run.total).toMatchObject({cases: 384, ok: 384, failed: 0})
    expect(r.exitCode).toBe(0)
    expect(probeOutcome(run).verdict).toBe('pass')
    expect((await stat(target)).size).toBe(384 * 16384)

    // --verify reads the same regions back and finds every pattern in place
    const v = await execa(bin.path, ['--verify', target], {reject: false})
    expect(v.stdout).toMatch(/^TOTAL cases=384 ok=384 failed=0 disk-mismatch=0 disk-error=0/m)
    expect(v.exitCode).toBe(0)
  }, 120_000)

  it('a missing compiler is named with the packages to install', async () => {
    const cache = await mkdtemp(join(tmpdir(), 'probe-cache-'))
    dirs.push(cache)
    await expect(buildProbe(cache, {cc: 'no-such-gcc-cvm'})).rejects.toMatchObject({
      message: expect.stringMatching(/no-such-gcc-cvm: not found.*NVMe offset probe/),
      hint: expect.stringContaining('gcc and libc6-dev'),
    })
  })

  it('the source is where the module looks for it', () => {
    expect(existsSync(PROBE_SOURCE)).toBe(true)
  })
})
