import {createHash} from 'node:crypto'
import {existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {parseCpuType} from '../src/measure/cpu-types.js'
import {launchMeasurements} from '../src/measure/launch.js'
import {kernelLoaderHashes, sevHashesTable} from '../src/measure/sev-hashes.js'
import {sevEsLaunchDigest, sevLaunchDigest} from '../src/measure/sev.js'
import type {VmsaForm} from '../src/measure/vmsa.js'
import {AMDSEV_LIKE_ENTRIES, pattern, syntheticOvmf} from './helpers/synthetic-ovmf.js'

/**
 * The SEV and SEV-ES launch digests of src/measure against an independent implementation:
 * virtee/sev-snp-measure (Python), run on this machine (Debian 12, Python 3.11.7, cryptography 48.0.0)
 * from a checkout of github.com/virtee/sev-snp-measure:
 *
 *   init2 form and sev: tag v0.0.13 (commit 5b6a79e86641a7ca1a377ba1848d1dcdc2498494), whose QEMU
 *     VMSA sets MXCSR 0x1f80 / FCW 0x37f (since 0.0.10, commit ae95e59):
 *       python3 sev-snp-measure.py --mode sev --ovmf FW
 *       python3 sev-snp-measure.py --mode seves --vcpus N --vcpu-type T --ovmf FW
 *   legacy form: the same commands at tag v0.0.9 (commit e93396a6e70aa740d08cb78ac29ca3bb05e3951d),
 *     whose QEMU VMSA leaves them zero.
 *   legacy-debug-swap form: v0.0.9's library (no CLI option gives SEV-ES SEV features): the SHA-256
 *     of OVMF(FW).data() followed by the pages of
 *       VMSA(SevMode.SEV_ES, ovmf.sev_es_reset_eip(), CPU_SIGS[T], 0x20, VMMType.QEMU).pages(N)
 *     (the same composition with 0x0 gives v0.0.9's CLI value).
 *   measured direct boot: the v0.0.13 / v0.0.9 commands with --kernel K [--initrd I --append A].
 */

interface OracleFirmware {
  path: string
  /** what the oracle was computed over: Debian 12's ovmf 2022.11-6+deb12u2 */
  sha256: string
  sev: string
  /** [form, vCPU type, vCPUs, digest] */
  sevEs: [VmsaForm, string, number, string][]
}

const DEBIAN_OVMF: OracleFirmware[] = [
  {
    path: '/usr/share/OVMF/OVMF_CODE_4M.fd',
    sha256: 'b157d97b1f69729514feb7f201d2cbe4957f23ab77920e361fe9f822ba49ca4c',
    sev: 'b157d97b1f69729514feb7f201d2cbe4957f23ab77920e361fe9f822ba49ca4c',
    sevEs: [
      ['legacy', 'EPYC-v4', 1, 'e0487cb980f614d6fe5a798e645d3e5e8f4db8fcf8ac560c97d27b6e6db4f8ef'],
      ['legacy', 'EPYC-v4', 2, '03c70eb80632e916b5ef3fead45cbcf79c58350cec2672bddb3999586ae0ac7d'],
      ['legacy', 'EPYC-v4', 4, '9a898ca5e90fb89d1b5bc8bef8b7044f8cdd07e48e0680d905145f6c5842e71a'],
      ['legacy', 'EPYC-Milan', 1, '07ad5ebe4aa59c2ed918c9f1438ff6de60d8475004f1c54013b7479a127367da'],
      ['legacy', 'EPYC-Milan', 2, '08c7efe5ed41a087f183cdcc126e2e4179937ec58cae45eba86ae07f83b49065'],
      ['legacy', 'EPYC-Milan', 4, 'a39f62109b79a32e3da6f65b6fa3c7dbaac4b6ea719d295ffaafd6bfeb5a4959'],
      ['init2', 'EPYC-v4', 1, 'c368889b1cfe678e2ebe3ef5e3ee5717563cae665c09ca366fe52a56b9f62d63'],
      ['init2', 'EPYC-v4', 2, '9322d994f884746b0f5da99a594a7e1d9a72e6366e163603f263d64e470e0dc6'],
      ['init2', 'EPYC-v4', 4, '9509e57b579b7be22e2b151ad3e941538f7ecb3028eeeef3a6c8aad65f8cfa2a'],
      ['init2', 'EPYC-Milan', 1, '3306bddfc8d500b89399d9b2a26cb68d46f19c30a2d47a31ade3abc18907fdb5'],
      ['init2', 'EPYC-Milan', 2, '39ffae5ea4624d0b5fec8d9318342f3da4d25ea5946264e142732157e188d92d'],
      ['init2', 'EPYC-Milan', 4, 'a8e5e0acc6ec0d027fe7badaad938fc131e657e5a15a9b3e3533e6f290ce1f93'],
      ['legacy-debug-swap', 'EPYC-v4', 1, '40ad94f63ddfdac5c71c9913b9b91d208f936edf75072460018a10c257af8e18'],
      ['legacy-debug-swap', 'EPYC-v4', 2, 'eed697bff0df636ea1cbbc0802940d472eaa86bb86cc395a867886fc82d0db45'],
      ['legacy-debug-swap', 'EPYC-v4', 4, '9f924dcff24e8a9b099d0a8e10a9bc6e55d2a6c5e409699e123f5d08d2af0491'],
      ['legacy-debug-swap', 'EPYC-Milan', 1, '5b9d396a9b6a6f6db4602ba273affe93612b6c7be7796f0322919d3825cb3b63'],
      ['legacy-debug-swap', 'EPYC-Milan', 2, '1031ec23e40cf5d3169f506ad50d1bc1f8eadc15f905d22330c058559a86c29a'],
      ['legacy-debug-swap', 'EPYC-Milan', 4, 'b9aa7d6623507d7e116bee38459fd577228c43c52d7115a2b51f6131158ee9df'],
    ],
  },
  {
    path: '/usr/share/OVMF/OVMF_CODE.fd',
    sha256: 'd9b568def24088c92f34b5479e0ed7e44d0a4d4cea8a0f5716719180bba48106',
    sev: 'd9b568def24088c92f34b5479e0ed7e44d0a4d4cea8a0f5716719180bba48106',
    sevEs: [
      ['legacy', 'EPYC-v4', 1, 'eba1359b4bdf7745d72c9de18582cbb352f81d55c4cedaa428cc7559db8dfbf8'],
      ['legacy', 'EPYC-v4', 2, '6106a787b499ed196409ca877974fdb46fee7df592e02a7a5d79383fd9be8886'],
      ['legacy', 'EPYC-v4', 4, 'df57443379501f0e84aabb3d54227be9058a9103df5377eebb649effae29f496'],
      ['legacy', 'EPYC-Milan', 1, '6f280a7a8c8c81ab6212c255bf0c6c556ebe3682add621050984ae0ead641270'],
      ['legacy', 'EPYC-Milan', 2, 'e7f12505e5a7998ab758f88d137c40498d8fbbb82e8f098a177c835c845b471b'],
      ['legacy', 'EPYC-Milan', 4, 'a78e7fef823ebcc5cc90e19339e0fe4379f78dc1a44b2bb84a0cf43f9ee3303a'],
      ['init2', 'EPYC-v4', 1, '4c55bc8b9c7804ec80940258127e2aae37f818436a54c55cebe89542bd6dc63f'],
      ['init2', 'EPYC-v4', 2, '02a0c4a5a76ee32cd799d5a26ffb2f2aff33fb3cc5d494e59b96b7e182add13f'],
      ['init2', 'EPYC-v4', 4, '7bf18ad3b394a1a30434c27459c61327ca5126e5b4774fac4977c8e0c08f508f'],
      ['init2', 'EPYC-Milan', 1, '9744805b533276d095d02bff09d067a1c49a665674feac2b08bf535fa36f9a2a'],
      ['init2', 'EPYC-Milan', 2, '218d999a2674f28c2d87266aec52d6fcc577111e1a6b903fef433d0c1c5f7ad3'],
      ['init2', 'EPYC-Milan', 4, '6979b214746d29495a772e952f0177cb74051e5a40edd18ac5b0821826e4cab2'],
      ['legacy-debug-swap', 'EPYC-v4', 1, '1bb6f395541caa9d2d883b61949b7cfc766330a4fc2445b72bdf1ac4edc91441'],
      ['legacy-debug-swap', 'EPYC-v4', 2, 'eb1f01b6416f5f3d175605d5ca4b133bef5a47a2697de8625c72ef7c4fa15c47'],
      ['legacy-debug-swap', 'EPYC-v4', 4, '767a43233d5dd2b2601d6d5adaaad7d98e8a8c0700b3dd37878440856bf3a991'],
      ['legacy-debug-swap', 'EPYC-Milan', 1, '7b2464ee8dc95d99d9a779e298ccdcb0c4ceb2bae776d7ea956d16a9b0522ad7'],
      ['legacy-debug-swap', 'EPYC-Milan', 2, 'e8136b958bc027a6cfa59468c73247870603dd02bdab7bc6612eadbee3587930'],
      ['legacy-debug-swap', 'EPYC-Milan', 4, '901ae71cad7ca17b55d2e4d09e297eaa134822438fd6b340cc0decfe2e7ef761'],
    ],
  },
]

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const key = (form: string, cpu: string, vcpus: number) => `${form} ${cpu} ${vcpus}`

/** The firmware file, or a skip saying why the oracle cannot speak for it. */
function oracleFirmware(fw: OracleFirmware, skip: (note: string) => never): Buffer {
  if (!existsSync(fw.path)) skip(`${fw.path} is absent (package ovmf): the oracle digests were computed for Debian 12's ovmf 2022.11-6+deb12u2`)
  const bytes = readFileSync(fw.path)
  if (sha256(bytes) !== fw.sha256) skip(`${fw.path} has sha256 ${sha256(bytes)}, not ${fw.sha256} (ovmf 2022.11-6+deb12u2) that the oracle digests were computed for`)
  return bytes
}

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
  afterAll(() => rmSync(dir, {recursive: true, force: true}))
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
