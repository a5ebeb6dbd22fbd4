import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {sha256File} from '../src/util/fsx.js'
import type {ValidationReport} from '../src/validate/report.js'
import {GUEST_DEFAULTS, validateImage} from '../src/validate/run.js'
import {repoRoot} from './helpers/paths.js'
import {buildUntil} from './helpers/pipeline.js'

/**
 * The report of one emulated validation of debian-12. In CI: the real validate stage through the
 * pipeline in the shared test cache, so the end-to-end build reuses this boot instead of booting
 * again. With CVM_TEST_DISK (a helper's artifact during development): validateImage on that disk.
 */
async function validateDebian12(out: string): Promise<{report: ValidationReport; dir: string; disk: string; sha256Before: string}> {
  if (process.env.CVM_TEST_DISK) {
    const disk = process.env.CVM_TEST_DISK
    const kj = process.env.CVM_TEST_KERNEL_JSON
    const k = kj ? (JSON.parse(await readFile(kj, 'utf8')) as {release?: string; version?: string}) : {}
    const sha256Before = await sha256File(disk)
    const report = await validateImage({
      ...GUEST_DEFAULTS,
      disk,
      modes: ['emulated'],
      templatesDir: join(repoRoot, 'templates'),
      outDir: out,
      expected: {release: k.release, version: k.version, diskSha256: sha256Before},
      diskBoot: true,
      log: (l) => process.stderr.write(`${l}\n`),
    })
    return {report, dir: out, disk, sha256Before}
  }
  const r = await buildUntil('debian-12', 'validate', {modes: ['emulated']})
  const dir = r.results.validate!.dir
  const disk = join(r.results.assemble!.dir, 'disk.raw')
  const report = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as ValidationReport
  return {report, dir, disk, sha256Before: (r.results.assemble!.meta as {diskSha256: string}).diskSha256}
}

describe('validate: boot the debian-12 disk in emulated mode (real QEMU + OVMF under TCG, NVMe, swiotlb=force)', () => {
  it('every check gets a verdict; NVMe O_DIRECT integrity and SWIOTLB bounces pass; the SEV line is skipped', async () => {
    const out = await mkdtemp(join(tmpdir(), 'cvm-validate-test-'))
    try {
      const {report, dir, disk, sha256Before} = await validateDebian12(out)
      process.stderr.write(`validate boot: ${report.verdict}, boot to SSH ${report.timings.bootToSshMs} ms, total ${report.timings.totalMs} ms\n`)
      for (const c of report.checks) process.stderr.write(`  ${c.verdict} ${c.name}: ${c.evidence}\n`)
      const by = (n: string) => report.checks.find((c) => c.name === n)
      const names = ['boot', 'kernel', 'marker', 'memory-encryption', 'swiotlb-active', 'network', 'nvme-integrity', 'swiotlb-bounce', 'cloud-init', 'kexec', 'poweroff', 'image-unchanged']
      for (const n of [...names, 'tpm-pcrs', 'disk-boot:boot', 'disk-boot:kernel', 'disk-boot:cmdline', 'disk-boot:tpm-pcrs', 'disk-boot:poweroff']) expect(by(n), `check ${n} has a verdict`).toBeDefined()
      // the vTPM (swtpm): PCR 11 as predicted from the UKI after systemd-pcrphase (the image has libtss2) in both boots;
      // PCR 4 as predicted where the firmware boots the disk itself; PCR 7 from the plain variable store
      expect(by('tpm-pcrs')!.evidence).toMatch(/^\/dev\/tpmrm0, SHA-256 bank: PCR 11 [0-9a-f]{64} = predicted \(phase sysinit:ready\); PCR 4 [0-9a-f]{64} \(not predicted: a -kernel boot.*; PCR 7 [0-9a-f]{64} = predicted \(Secure Boot off\)$/)
      expect(by('disk-boot:tpm-pcrs')!.evidence).toMatch(/PCR 11 [0-9a-f]{64} = predicted \(phase sysinit:ready\); PCR 4 [0-9a-f]{64} = predicted \(Secure Boot off\); PCR 7 [0-9a-f]{64} = predicted \(Secure Boot off\)$/)
      expect(by('nvme-integrity')).toMatchObject({verdict: 'pass'})
      expect(by('swiotlb-bounce')).toMatchObject({verdict: 'pass'})
      expect(by('swiotlb-active')!.evidence).toMatch(/swiotlb=force/)
      expect(by('memory-encryption')).toMatchObject({verdict: 'skip'})
      expect(by('memory-encryption')!.evidence).toMatch(/emulated mode/)
      expect(by('image-unchanged')).toMatchObject({verdict: 'pass'})
      // through the pipeline, assemble kept the disk's sha256 by its extent digest: validation did not read it whole
      if (!process.env.CVM_TEST_DISK) expect(by('image-unchanged')!.evidence).toMatch(/\(known to the build cache by its extent digest; after the boots the same extent digest, \d+ bytes allocated\)$/)
      expect(await sha256File(disk)).toBe(sha256Before)
      expect(by('disk-boot:cmdline')!.evidence).not.toMatch(/swiotlb=force/)
      const junit = await readFile(join(dir, 'junit.xml'), 'utf8')
      expect(junit.match(/<testcase /g)).toHaveLength(report.checks.length)
      expect(await readFile(join(dir, 'serial.log'), 'utf8')).toMatch(/Linux version/)
      // the image's own verdicts: all must pass (or be skipped with a reason) for debian-12
      const failed = report.checks.filter((c) => c.verdict === 'fail')
      expect(failed.map((c) => `${c.name}: ${c.evidence}`)).toEqual([])
      expect(report.verdict).toBe('passed')
    } finally {
      await rm(out, {recursive: true, force: true})
    }
  }, 2_400_000)
})
