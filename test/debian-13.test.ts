import {mkdtempSync, readFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import type {KernelCheckResult} from '../src/kernel/check.js'
import {cli} from './helpers/cli.js'
import {sharedTestCache} from './helpers/paths.js'
import {decryptedSnakeoilKey, SNAKEOIL_CERT} from './helpers/snakeoil.js'

// Today's CVMs (issue #28): `cvm-image build debian-13` (trixie's linux-source-6.12, every SEV-SNP
// and TDX guest piece) through the CLI, signed with Debian's snakeoil key so that one validation
// boots the UKI with swiotlb=force, the disk by the firmware alone and the signed UKI under Secure
// Boot, then published by `cvm-image publish` in the raw format alone: the manifest (flags, SNP
// digest) is the same for every format, and e2e proves the qcow2 and GCE forms of the same code.
// Its own base and kernel: the one compile this file adds to the suite (docs/testing.md).
const work = mkdtempSync(join(tmpdir(), 'cvm-debian-13-'))
afterAll(() => rm(work, {recursive: true, force: true}))

interface Check {
  mode: string
  name: string
  verdict: string
  evidence: string
}
interface BuildJson {
  stages: {stage: string; status: string; dir: string}[]
  validation: {verdict: string; checks: Check[]}
}

describe('cvm-image build debian-13 (linux-source-6.12)', () => {
  let b: BuildJson
  let release: string

  it('builds, passes every emulated check (NVMe under swiotlb=force, kexec, the vTPM PCRs, Secure Boot) and publishes', async () => {
    const key = await decryptedSnakeoilKey(join(work, 'snakeoil.key'))
    const r = await cli(['build', 'debian-13', '--cache-dir', sharedTestCache(), '--signing-key', key, '--signing-cert', SNAKEOIL_CERT, '--no-publish', '--json'], {
      cwd: work,
      timeoutMs: 80 * 60_000,
    })
    expect(r.code, r.stderr.slice(-4000) + r.stdout.slice(-4000)).toBe(0)
    b = JSON.parse(r.stdout) as BuildJson
    const failed = b.validation.checks.filter((c) => c.verdict === 'fail')
    expect(failed, JSON.stringify(failed, null, 2)).toEqual([])
    expect(b.validation.verdict).toBe('passed')
    const c = Object.fromEntries(b.validation.checks.map((x) => [x.name, x]))
    for (const name of ['boot', 'kernel', 'marker', 'nvme-integrity', 'swiotlb-bounce', 'kexec', 'cloud-init', 'disk-boot:tpm-pcrs', 'secure-boot:secure-boot', 'secure-boot:tpm-pcrs']) {
      expect(c[name]?.verdict, `${name}: ${c[name]?.evidence}`).toBe('pass')
    }
    expect(c.kernel.evidence).toMatch(/6\.12\.\d+-cvm/)
    expect(c['nvme-integrity'].evidence).toMatch(/384\/384/)
    expect(c['memory-encryption'].verdict).toBe('skip') // no SEV here: skipped, never passed

    const p = await cli(['publish', join(sharedTestCache(), 'builds', 'debian-13.json'), '--cache-dir', sharedTestCache(), '--format', 'raw', '--publish', `dir:${join(work, 'out')}`, '--json'], {
      cwd: work,
      timeoutMs: 15 * 60_000,
    })
    expect(p.code, p.stderr.slice(-4000)).toBe(0)
    const published = JSON.parse(p.stdout) as {location: string; files: {name: string}[]}
    expect(published.files.map((f) => f.name)).toContain('disk.raw')
    release = published.location.replace(/^dir:/, '')
  }, 85 * 60_000)

  it('its kernel records every SNP and TDX guest piece as supported, and the release carries the flags and the SNP launch digest that follow', () => {
    const compile = b.stages.find((s) => s.stage === 'compile')!.dir
    const kernel = JSON.parse(readFileSync(join(compile, 'kernel.json'), 'utf8')) as {support: {features: {feature: string; status: string}[]}}
    const status = Object.fromEntries(kernel.support.features.map((f) => [f.feature, f.status]))
    for (const f of ['sev', 'sev-es', 'sev-snp', 'sev-guest', 'tdx', 'tdx-guest-driver', 'unaccepted-memory', 'tsm-reports', 'sev-live-migration']) expect(status[f], f).toBe('supported')
    const config = readFileSync(join(compile, 'config'), 'utf8')
    for (const o of ['CONFIG_SEV_GUEST=m', 'CONFIG_INTEL_TDX_GUEST=y', 'CONFIG_TDX_GUEST_DRIVER=m', 'CONFIG_UNACCEPTED_MEMORY=y', 'CONFIG_TSM_REPORTS=m', 'CONFIG_GVE=m']) expect(config).toContain(`\n${o}\n`)

    const manifest = JSON.parse(readFileSync(join(release, 'manifest.json'), 'utf8')) as {
      gce: {guestOsFeatures: {type: string}[]}
      measurements: {entries: {kind: string; params: Record<string, unknown>}[]}
    }
    expect(manifest.gce.guestOsFeatures.map((g) => g.type)).toEqual(expect.arrayContaining(['UEFI_COMPATIBLE', 'SEV_CAPABLE', 'SEV_SNP_CAPABLE', 'TDX_CAPABLE', 'SEV_LIVE_MIGRATABLE_V2', 'GVNIC']))
    expect(manifest.measurements.entries.filter((e) => e.kind === 'snp-launch')).toHaveLength(1)
  })

  it('kernel check debian-13 reads every SNP and TDX piece from the 6.12 tree', async () => {
    const r = await cli(['kernel', 'check', 'debian-13', '--cache-dir', sharedTestCache(), '--json'], {cwd: work, timeoutMs: 10 * 60_000})
    expect(r.code, r.stderr).toBe(0)
    const k = JSON.parse(r.stdout) as KernelCheckResult
    const status = Object.fromEntries(k.features.map((f) => [f.feature, f.status]))
    for (const f of ['sev', 'sev-es', 'sev-snp', 'sev-guest', 'tdx', 'tdx-guest-driver', 'unaccepted-memory', 'tsm-reports']) expect(status[f], f).toBe('supported')
    // 6.12 has every guest fix of kernels/fixes.yaml, read in its own form (the #VC handler in
    // arch/x86/coco/sev/core.c, swiotlb's tlb_offset, nvme sized by dma_opt_mapping_size)
    expect(Object.fromEntries(k.fixes!.map((f) => [f.fix, f.status]))).toEqual(Object.fromEntries(k.fixes!.map((f) => [f.fix, 'present'])))
    expect(k.fixes!.length).toBeGreaterThanOrEqual(8)
  }, 15 * 60_000)
})
