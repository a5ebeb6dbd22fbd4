import {mkdtempSync, readFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {STAGE_NAMES} from '../src/pipeline/stage.js'
import {run} from '../src/util/exec.js'
import {cli} from './helpers/cli.js'
import {sharedTestCache} from './helpers/paths.js'

// The whole `cvm-image build debian-12` as CI and the README's quick start run it: mmdebstrap,
// linux-source-6.1 + the series, a real kernel build, the disk, a TCG boot with swiotlb=force,
// publish. The cache is the one the other heavy tests share, so stages they built are reused.
const out = mkdtempSync(join(tmpdir(), 'cvm-e2e-out-'))
afterAll(() => rm(out, {recursive: true, force: true}))

interface BuildJson {
  stages: {stage: string; status: 'ran' | 'cached'}[]
  validation: {verdict: string; checks: {mode: string; name: string; verdict: string; evidence: string}[]}
  published: {location: string; unchanged: boolean; bytesUploaded: number; files: {name: string; action: string}[]; manifest: any}
}

describe('end to end: cvm-image build debian-12', () => {
  const args = ['build', 'debian-12', '--cache-dir', sharedTestCache(), '--publish', out, '--json']

  it('builds, validates in emulated mode and publishes', async () => {
    const r = await cli(args, {timeoutMs: 55 * 60_000})
    expect(r.code, r.stderr + r.stdout.slice(-4000)).toBe(0)
    const b = JSON.parse(r.stdout) as BuildJson
    expect(b.stages.map((s) => s.stage)).toEqual([...STAGE_NAMES])

    const verdict = Object.fromEntries(b.validation.checks.map((c) => [`${c.mode}/${c.name}`, c.verdict]))
    expect(b.validation.verdict).toBe('passed')
    expect(verdict['emulated/boot']).toBe('pass')
    expect(verdict['emulated/kernel']).toBe('pass')
    // the marker line of kernels/6.1/cvm-marker.patch proves the patched kernel is the one that booted
    expect(verdict['emulated/marker']).toBe('pass')
    expect(verdict['emulated/nvme-integrity']).toBe('pass')
    expect(verdict['emulated/swiotlb-bounce']).toBe('pass')
    expect(verdict['emulated/memory-encryption']).toBe('skip') // no SEV here: skipped, never passed
    expect(verdict['emulated/cloud-init']).toBe('pass')
    expect(verdict['emulated/poweroff']).toBe('pass')

    const p = b.published
    expect(p.files.map((f) => f.name).sort()).toEqual(
      expect.arrayContaining(['SHA256SUMS', 'disk.qcow2', 'disk.raw', 'manifest.json', 'provenance.intoto.json']),
    )
    // the published checksums hold for the published bytes
    const release = p.location.replace(/^dir:/, '')
    await run('sha256sum', ['--check', '--quiet', 'SHA256SUMS'], {cwd: release, what: 'check the published SHA256SUMS'})
    const manifest = JSON.parse(readFileSync(join(release, 'manifest.json'), 'utf8'))
    expect(manifest.recipe.id).toBe('debian-12')
    expect(manifest.validation.status).toBe('passed')
    expect(manifest.kernel.patches.map((x: {file?: string}) => x.file)).toContain('6.1/cvm-marker.patch')
    expect(manifest.gce.guestOsFeatures.map((g: {type: string}) => g.type)).toEqual(expect.arrayContaining(['UEFI_COMPATIBLE', 'SEV_CAPABLE']))
    // the manifest's expected PCRs are the ones the firmware boot of this disk left in a real vTPM (swtpm), as validation read them
    const entries = manifest.measurements.entries as {kind: string; value: string; params: {phase?: string; secureBoot?: string}; proof: {status: string; phase?: string}}[]
    const expected = (kind: string, f: (p: {phase?: string; secureBoot?: string}) => boolean) => entries.find((e) => e.kind === kind && f(e.params))!.value
    const evidence = b.validation.checks.find((c) => c.name === 'disk-boot:tpm-pcrs')!.evidence
    expect(evidence).toContain(`PCR 11 ${expected('tpm-pcr11', (p) => p.phase === 'sysinit:ready')} = predicted`)
    expect(evidence).toContain(`PCR 4 ${expected('tpm-pcr4', (p) => p.secureBoot === 'off')} = predicted`)
    expect(evidence).toContain(`PCR 7 ${expected('tpm-pcr7', (p) => p.secureBoot === 'off')} = predicted`)
    // and the manifest says so: proven on the vTPM, PCR 11 at the phase it matched
    expect(entries.find((e) => e.kind === 'tpm-pcr11' && e.params.phase === 'sysinit:ready')!.proof).toMatchObject({status: 'proven-on-vtpm', phase: 'sysinit:ready'})
    expect(entries.find((e) => e.kind === 'tpm-pcr7' && e.params.secureBoot === 'off')!.proof).toMatchObject({status: 'proven-on-vtpm'})
  }, 60 * 60_000)

  it('a second build runs no stage and publishes nothing new; plan shows every stage cached', async () => {
    const r = await cli(args, {timeoutMs: 10 * 60_000})
    expect(r.code, r.stderr).toBe(0)
    const b = JSON.parse(r.stdout) as BuildJson
    expect(b.stages.map((s) => s.status)).toEqual(STAGE_NAMES.map(() => 'cached'))
    expect(b.published.unchanged).toBe(true)
    expect(b.published.bytesUploaded).toBe(0)

    const plan = await cli(['plan', 'debian-12', '--cache-dir', sharedTestCache(), '--json'])
    expect(JSON.parse(plan.stdout).stages.every((s: {cached: boolean}) => s.cached)).toBe(true)
  }, 15 * 60_000)
})
