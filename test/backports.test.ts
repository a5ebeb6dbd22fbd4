import {existsSync, mkdtempSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import type {KernelCheckResult} from '../src/kernel/check.js'
import {cli} from './helpers/cli.js'
import {oldKernelsArchive, sharedTestCache} from './helpers/paths.js'

// The backports proven on real old kernel trees, through the CLI as a user runs them: the 5.4
// recipe both ways (the control, without the backports, must fail NVMe integrity through SWIOTLB;
// the patched build must pass every check), and 5.8 patched, configured and compiled. The 4.18
// line's series is built and validated by test/rhel-family.test.ts, from the same tree in the form
// RHEL ships it (a source RPM): building backport-4.18 here too would compile that tree twice.
// The trees come from ../shared/kernels/old-kernels.tar.zst (CVM_TEST_OLD_KERNELS overrides it).
const archive = oldKernelsArchive()
const cwd = mkdtempSync(join(tmpdir(), 'cvm-backports-'))
afterAll(() => rmSync(cwd, {recursive: true, force: true}))

interface Check {
  mode: string
  name: string
  verdict: string
  evidence: string
}
interface BuildJson {
  control: boolean
  stages: {stage: string; status: string; dir: string}[]
  validation?: {verdict: string; checks: Check[]}
  published?: unknown
}

const build = (id: string, ...extra: string[]) =>
  cli(['build', id, '--kernel-source-file', archive, '--cache-dir', sharedTestCache(), '--json', ...extra], {cwd, timeoutMs: 55 * 60_000})

function parse(r: {code: number; stdout: string; stderr: string}): BuildJson {
  expect(r.code, `${r.stderr.slice(-3000)}\n${r.stdout.slice(-3000)}`).toBe(0)
  return JSON.parse(r.stdout) as BuildJson
}

const byName = (checks: Check[]) => Object.fromEntries(checks.map((c) => [c.name, c]))

describe('backports on real old trees', () => {
  it('the old-kernels archive is here', () => {
    expect(existsSync(archive), `${archive} missing: CI has ../shared beside the clone; set CVM_TEST_OLD_KERNELS elsewhere`).toBe(true)
  })

  it('5.4 control: the unpatched 5.4.59 fails NVMe integrity through SWIOTLB, with the failing cases as evidence, and is not published', async () => {
    const b = parse(await build('backport-5.4', '--control'))
    expect(b.control).toBe(true)
    expect(b.published).toBeUndefined()
    expect(existsSync(join(cwd, 'out'))).toBe(false)
    const v = b.validation!
    expect(v.verdict).toBe('failed')
    const c = byName(v.checks)
    // the kernel that booted is the control build, and everything but the bug works on it
    expect(c.boot.verdict).toBe('pass')
    expect(c.kernel.verdict).toBe('pass')
    expect(c['swiotlb-active'].verdict).toBe('pass')
    expect(c['nvme-integrity'].verdict).toBe('fail')
    // write-side corruption (the disk got wrong bytes) is named with its counts and cases
    expect(c['nvme-integrity'].evidence).toMatch(/write-corrupt/)
    expect(c['nvme-integrity'].evidence).toMatch(/\d+ of 384/)
  }, 60 * 60_000)

  it('5.4 patched: every check passes (memory encryption skipped: no SEV here)', async () => {
    const b = parse(await build('backport-5.4', '--no-publish'))
    expect(b.control).toBe(false)
    const v = b.validation!
    const failed = v.checks.filter((x) => x.verdict === 'fail')
    expect(failed, JSON.stringify(failed, null, 2)).toEqual([])
    expect(v.verdict).toBe('passed')
    const c = byName(v.checks)
    expect(c['nvme-integrity'].verdict).toBe('pass')
    expect(c['nvme-integrity'].evidence).toMatch(/384\/384/)
    expect(c['swiotlb-bounce'].verdict).toBe('pass')
    expect(c.kexec.verdict).toBe('pass')
    expect(c['memory-encryption'].verdict).toBe('skip')
    // the patch stage applied the series' backports, judged from the tree's content
    const patchDir = b.stages.find((s) => s.stage === 'patch')!.dir
    expect(existsSync(join(patchDir, 'tree', 'kernel', 'dma', 'pool.c'))).toBe(true)
  }, 60 * 60_000)

  it('kernel check backport-5.4: each guest fix missing from 5.4.59 is added by the series', async () => {
    const r = await cli(['kernel', 'check', 'backport-5.4', '--kernel-source-file', archive, '--cache-dir', sharedTestCache(), '--json'], {cwd, timeoutMs: 10 * 60_000})
    expect(r.code, r.stderr).toBe(0)
    const k = JSON.parse(r.stdout) as KernelCheckResult
    expect(k.kind).toBe('recipe')
    const status = Object.fromEntries(k.fixes!.map((f) => [f.fix, f.status]))
    expect(status).toEqual({
      'min-align-mask': 'added-by-series',
      'swiotlb-sync-offset': 'added-by-series',
      'nvme-min-align-first': 'added-by-series',
      'sev-swiotlb-size': 'added-by-series',
      'dma-atomic-pools': 'added-by-series',
      // kernels/5.4 does not carry the SEV-ES guest: that needs the 5.8 line with its series, or 5.10+
      'sev-es-guest': 'missing',
    })
    expect(k.features.find((f) => f.feature === 'sev-es')!.status).toBe('needs-backport')
    expect(k.features.find((f) => f.feature === 'swiotlb')!.status).toBe('supported')
  }, 15 * 60_000)

  it('5.8: the series applies to the real tree, configures and compiles', async () => {
    const b = parse(await build('backport-5.8', '--until', 'compile'))
    expect(b.stages.map((s) => s.stage)).toEqual(['base', 'kernel-source', 'patch', 'configure', 'compile'])
    const compileDir = b.stages.find((s) => s.stage === 'compile')!.dir
    expect(readdirSync(compileDir)).toEqual(expect.arrayContaining(['vmlinuz', 'kernel.json']))
  }, 60 * 60_000)

  it('kernel check backport-5.8: the SEV-ES guest (5.10) is added by kernels/5.8\'s series, judged from the patched tree', async () => {
    const r = await cli(['kernel', 'check', 'backport-5.8', '--kernel-source-file', archive, '--cache-dir', sharedTestCache(), '--json'], {cwd, timeoutMs: 10 * 60_000})
    expect(r.code, r.stderr).toBe(0)
    const k = JSON.parse(r.stdout) as KernelCheckResult
    const fix = k.fixes!.find((f) => f.fix === 'sev-es-guest')!
    expect(fix.status).toBe('added-by-series')
    expect(fix.addedBy).toEqual(expect.arrayContaining([expect.stringMatching(/0300-/), expect.stringMatching(/0310-/), expect.stringMatching(/0320-/)]))
    const sevEs = k.features.find((f) => f.feature === 'sev-es')!
    expect(sevEs.status).toBe('supported')
    expect(sevEs.reason).toMatch(/^added by the recipe's series: /)
  }, 15 * 60_000)
})
