import {existsSync} from 'node:fs'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {readBuildRecord} from '../src/pipeline/build-record.js'
import {sha256File} from '../src/util/fsx.js'
import {validateImage} from '../src/validate/run.js'
import {repoRoot, sharedTestCache} from './helpers/paths.js'

interface DiskUnderTest {
  disk: string
  release?: string
  version?: string
  from: string
}

/**
 * The debian-12 disk: CVM_TEST_DISK (+ CVM_TEST_KERNEL_JSON), else the last debian-12 build in the
 * shared test cache (the lead's end-to-end build), else the helpers' development artifact.
 */
async function findDisk(): Promise<DiskUnderTest | undefined> {
  if (process.env.CVM_TEST_DISK) {
    const k = process.env.CVM_TEST_KERNEL_JSON ? JSON.parse(await readFile(process.env.CVM_TEST_KERNEL_JSON, 'utf8')) : {}
    return {disk: process.env.CVM_TEST_DISK, release: k.release, version: k.version, from: 'CVM_TEST_DISK'}
  }
  try {
    const rec = await readBuildRecord(sharedTestCache(), 'debian-12')
    const a = rec.stages.assemble
    const c = rec.stages.compile?.meta as {release?: string; version?: string} | undefined
    if (a && existsSync(join(a.dir, 'disk.raw'))) return {disk: join(a.dir, 'disk.raw'), release: c?.release, version: c?.version, from: 'shared test cache build record'}
  } catch {
    // no build record yet
  }
  const art = '/work/artifacts/debian-12'
  if (existsSync(join(art, 'READY')) && existsSync(join(art, 'disk.raw'))) {
    const kj = ['/work/artifacts/kernel-6.1/kernel.json', join(art, 'kernel.json')].find((p) => existsSync(p))
    const k = kj ? JSON.parse(await readFile(kj, 'utf8')) : {}
    return {disk: join(art, 'disk.raw'), release: k.release, version: k.version, from: art}
  }
  return undefined
}

const target = await findDisk()

describe('validate: boot the debian-12 disk in emulated mode (real QEMU + OVMF, TCG)', () => {
  it.skipIf(!target)(`every check gets a verdict; NVMe integrity and SWIOTLB bounces pass; SEV line skipped (${target?.from ?? 'no debian-12 disk: set CVM_TEST_DISK or build debian-12'})`, async () => {
    const out = await mkdtemp(join(tmpdir(), 'cvm-validate-test-'))
    try {
      const before = await sha256File(target!.disk)
      const report = await validateImage({
        disk: target!.disk,
        modes: ['emulated'],
        templatesDir: join(repoRoot, 'templates'),
        outDir: out,
        expected: {release: target!.release, version: target!.version, diskSha256: before},
        diskBoot: true,
        log: (l) => process.stderr.write(`${l}\n`),
      })
      const by = (n: string) => report.checks.find((c) => c.name === n)
      for (const n of ['kernel', 'marker', 'memory-encryption', 'swiotlb-active', 'network', 'cloud-init', 'nvme-integrity', 'swiotlb-bounce', 'kexec', 'poweroff', 'image-unchanged', 'disk-boot:kernel', 'disk-boot:cmdline', 'disk-boot:poweroff']) {
        expect(by(n), `check ${n} has a verdict`).toBeDefined()
      }
      expect(by('nvme-integrity')).toMatchObject({verdict: 'pass'})
      expect(by('swiotlb-bounce')).toMatchObject({verdict: 'pass'})
      expect(by('swiotlb-active')).toMatchObject({verdict: 'pass'})
      expect(by('memory-encryption')).toMatchObject({verdict: 'skip'})
      expect(by('memory-encryption')!.evidence).toMatch(/emulated mode/)
      expect(by('image-unchanged')).toMatchObject({verdict: 'pass'})
      expect(by('poweroff')!.evidence).toMatch(/reboot: Power down/)
      expect(await sha256File(target!.disk)).toBe(before)
      const junit = await readFile(join(out, 'junit.xml'), 'utf8')
      expect(junit.match(/<testcase /g)).toHaveLength(report.checks.length)
      expect(JSON.parse(await readFile(join(out, 'report.json'), 'utf8')).checks).toHaveLength(report.checks.length)
      expect(await readFile(join(out, 'serial.log'), 'utf8')).toMatch(/Linux version/)
      // the remaining verdicts are the image's: print them, and require them where the image is known to carry the parts
      process.stderr.write(`validate boot: ${report.verdict}, boot to SSH ${report.timings.bootToSshMs} ms, total ${report.timings.totalMs} ms\n`)
      for (const c of report.checks) process.stderr.write(`  ${c.verdict} ${c.name}: ${c.evidence}\n`)
      expect(report.verdict, report.checks.filter((c) => c.verdict === 'fail').map((c) => `${c.name}: ${c.evidence}`).join('\n')).toBe('passed')
    } finally {
      await rm(out, {recursive: true, force: true})
    }
  }, 1_800_000)
})
