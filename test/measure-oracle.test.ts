import {createHash} from 'node:crypto'
import {mkdtempSync, writeFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {parseCpuType} from '../src/measure/cpu-types.js'
import {launchMeasurements} from '../src/measure/launch.js'
import {kernelLoaderHashes, sevHashesTable} from '../src/measure/sev-hashes.js'
import {sevEsLaunchDigest, sevLaunchDigest} from '../src/measure/sev.js'
import type {VmsaForm} from '../src/measure/vmsa.js'
import {DEBIAN_OVMF, oracleFirmware} from './helpers/sev-oracle.js'
import {AMDSEV_LIKE_ENTRIES, pattern, syntheticOvmf} from './helpers/synthetic-ovmf.js'

/**
 * src/measure's SEV and SEV-ES launch digests against an independent implementation,
 * virtee/sev-snp-measure: the commands and versions that gave each digest are in
 * test/helpers/sev-oracle.ts. A firmware file whose sha256 is not the one the oracle ran on is
 * skipped, saying so.
 */

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const key = (form: string, cpu: string, vcpus: number) => `${form} ${cpu} ${vcpus}`

describe('launch digests against virtee/sev-snp-measure on Debian 12 OVMF', () => {
  for (const fw of DEBIAN_OVMF) {
    it(`${fw.path}: SEV and 18 SEV-ES digests (3 VMSA forms, EPYC-v4 and EPYC-Milan, 1/2/4 vCPUs) equal the oracle's`, (ctx) => {
      const bytes = oracleFirmware(fw, (note) => ctx.skip(note))
      const firmware = {file: fw.path, bytes}
      expect(sevLaunchDigest({firmware}).toString('hex')).toBe(fw.sev)
      const computed = Object.fromEntries(
        fw.sevEs.map(([form, cpu, vcpus]) => [key(form, cpu, vcpus), sevEsLaunchDigest({firmware, vcpus, cpuSignature: parseCpuType(cpu).signature, form}).toString('hex')]),
      )
      expect(computed).toEqual(Object.fromEntries(fw.sevEs.map(([form, cpu, vcpus, digest]) => [key(form, cpu, vcpus), digest])))
    })
  }

  it('the measure service lists, for the flags given, exactly the oracle\'s digests with the parameters each was computed for', async (ctx) => {
    const fw = DEBIAN_OVMF[0]
    oracleFirmware(fw, (note) => ctx.skip(note))
    const entries = await launchMeasurements({firmware: [fw.path], modes: ['sev', 'sev-es'], cpus: [1, 4], cpuTypes: ['EPYC-Milan', '25/1/1', '0x800f12'], vmsaForms: ['legacy', 'init2']})
    expect(entries.filter((e) => e.kind === 'sev-launch').map((e) => e.value)).toEqual([fw.sev])
    const es = entries.filter((e) => e.kind === 'sev-es-launch')
    expect(es).toHaveLength(2 * 3 * 2)
    const oracle = Object.fromEntries(fw.sevEs.map(([form, cpu, vcpus, digest]) => [key(form, cpu, vcpus), digest]))
    // 25/1/1 is EPYC-Milan's family/model/stepping and 0x800f12 EPYC-v4's signature
    const asNamed: Record<string, string> = {'EPYC-Milan': 'EPYC-Milan', '25/1/1': 'EPYC-Milan', '0x800f12': 'EPYC-v4'}
    for (const e of es) {
      expect(e.value, JSON.stringify(e.params)).toBe(oracle[key(String(e.params.vmsaForm), asNamed[String(e.params.cpuType)], Number(e.params.vcpus))])
      expect(e.params).toMatchObject({firmware: fw.path, firmwareSha256: fw.sha256, apResetAddress: '0x00808004'})
      expect(e.dependsOn).toEqual(['firmware', 'vcpus', 'cpu-signature', 'vmsa-form'])
    }
    expect(es.find((e) => e.params.cpuType === '25/1/1')?.params.cpuSignature).toBe('0x00a00f11')
  })
})

describe('measured direct boot against virtee/sev-snp-measure on a synthetic OvmfPkg/AmdSev-like firmware', () => {
  // test/helpers/synthetic-ovmf.ts: 64 KiB, footer table with a kernel hashes area at 0x810c00
  // (0x400 bytes), a secret area and the SEV-ES reset block 0x80b004; the oracle ran on these bytes
  const firmwareBytes = syntheticOvmf({entries: AMDSEV_LIKE_ENTRIES})
  const kernelBytes = pattern(100_000, 2)
  const initrdBytes = pattern(50_000, 3)
  const append = 'console=ttyS0 root=/dev/vda1'
  const dir = mkdtempSync(join(tmpdir(), 'cvm-measure-oracle-'))
  afterAll(() => rm(dir, {recursive: true, force: true}))
  const kernel = join(dir, 'vmlinuz')
  const initrd = join(dir, 'initrd')
  writeFileSync(kernel, kernelBytes)
  writeFileSync(initrd, initrdBytes)
  const firmware = {file: 'amdsev-like.fd', bytes: firmwareBytes}

  it('the synthetic files are the bytes the oracle was computed over', () => {
    // if the helper changes, these change: rerun the oracle commands above on the new bytes
    expect(sha256(firmwareBytes)).toBe('85fbb7264d9b4c166faf1ac500f6540cba139e22280409b49022c60b3b24d473')
    expect(sha256(kernelBytes)).toBe('6998f8c4da329c87518f46d942a5aa8b0ec42fd940a57b4511ef9ff0755b0e7d')
    expect(sha256(initrdBytes)).toBe('4d9073ddc9db2aada433f22590b7c63eb03d394bb56b0a30c7504962a582aade')
  })

  it('SEV and SEV-ES digests with the kernel hashes table (kernel, initrd, command line; kernel alone) equal the oracle\'s', async () => {
    const full = sevHashesTable(await kernelLoaderHashes({kernel, initrd, append}))
    const kernelOnly = sevHashesTable(await kernelLoaderHashes({kernel}))
    const es = (table: Buffer | undefined, form: VmsaForm, cpu: string, vcpus: number) =>
      sevEsLaunchDigest({firmware, hashesTable: table, vcpus, cpuSignature: parseCpuType(cpu).signature, form}).toString('hex')
    expect({
      'sev full': sevLaunchDigest({firmware, hashesTable: full}).toString('hex'),
      'sev kernel-only': sevLaunchDigest({firmware, hashesTable: kernelOnly}).toString('hex'),
      'sev disk': sevLaunchDigest({firmware}).toString('hex'),
      'seves legacy EPYC-v4 1 full': es(full, 'legacy', 'EPYC-v4', 1),
      'seves legacy EPYC-v4 4 full': es(full, 'legacy', 'EPYC-v4', 4),
      'seves init2 EPYC-v4 1 full': es(full, 'init2', 'EPYC-v4', 1),
      'seves init2 EPYC-v4 4 full': es(full, 'init2', 'EPYC-v4', 4),
      'seves init2 EPYC-Milan 2 kernel-only': es(kernelOnly, 'init2', 'EPYC-Milan', 2),
      'seves legacy EPYC-Milan 2 disk': es(undefined, 'legacy', 'EPYC-Milan', 2),
    }).toEqual({
      'sev full': '5ab12a78f98852304e047442802f38e7e2e108d70b23f686e2411fd9da9e4a12',
      'sev kernel-only': 'dc9e90c11f0a50c96019cc5e10f59093f677e3551a2008a50da2fad21ad171c5',
      'sev disk': '85fbb7264d9b4c166faf1ac500f6540cba139e22280409b49022c60b3b24d473',
      'seves legacy EPYC-v4 1 full': '4ed3af57387943b9cb87003c88ee45b4b0495afac64483c8d851e181d322b708',
      'seves legacy EPYC-v4 4 full': '5d1380e43a6c0f84c87b456ee8d0a1c4fe271f2becfea77db7c6e06d1229f105',
      'seves init2 EPYC-v4 1 full': 'e6298375b5917d887bc3c57fbe9887af632c93c37d0c773af2fb5e774d9f9ca6',
      'seves init2 EPYC-v4 4 full': 'e69d1ef78afe7e0237fcdb685e1071e63baa4ffc5cb3b537f320cb771ca1814b',
      'seves init2 EPYC-Milan 2 kernel-only': '8663cb8d3bdb5a91cd0e2548d1c222f1cfaac289579c02c01f829e2dc6b16089',
      'seves legacy EPYC-Milan 2 disk': '57ed34f6f473d7e1d31e3e6cc7d80138a10f6aeca51603dcc91a7a5da5a9c2db',
    })
  })
})
