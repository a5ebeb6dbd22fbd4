import {createHash} from 'node:crypto'
import {existsSync, readFileSync} from 'node:fs'

import type {VmsaForm} from '../../src/measure/vmsa.js'

/**
 * Oracle digests for src/measure's SEV and SEV-ES launch digests, from an independent implementation,
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
 *   measured direct boot (test/measure-oracle.test.ts, the synthetic firmware, kernel and initrd it
 *     makes): the v0.0.13 (init2, sev) and v0.0.9 (legacy) commands with "full": --kernel vmlinuz
 *     --initrd initrd --append 'console=ttyS0 root=/dev/vda1'; "kernel-only": --kernel vmlinuz;
 *     "disk": neither.
 */

export interface OracleFirmware {
  path: string
  /** what the oracle was computed over: Debian 12's ovmf 2022.11-6+deb12u2 */
  sha256: string
  sev: string
  /** [form, vCPU type, vCPUs, digest] */
  sevEs: [VmsaForm, string, number, string][]
}

export const DEBIAN_OVMF: OracleFirmware[] = [
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

/** The firmware file, or a skip saying why the oracle cannot speak for it. */
export function oracleFirmware(fw: OracleFirmware, skip: (note: string) => never): Buffer {
  if (!existsSync(fw.path)) skip(`${fw.path} is absent (package ovmf): the oracle digests were computed for Debian 12's ovmf 2022.11-6+deb12u2`)
  const bytes = readFileSync(fw.path)
  const actual = createHash('sha256').update(bytes).digest('hex')
  if (actual !== fw.sha256) skip(`${fw.path} has sha256 ${actual}, not ${fw.sha256} (ovmf 2022.11-6+deb12u2) that the oracle digests were computed for`)
  return bytes
}
