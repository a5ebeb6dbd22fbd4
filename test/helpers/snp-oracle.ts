import {createHash} from 'node:crypto'
import {existsSync, readFileSync} from 'node:fs'
import {mkdir, rename, rm} from 'node:fs/promises'
import {join} from 'node:path'

import {StageError} from '../../src/errors.js'
import type {SnpVmm} from '../../src/measure/vmsa.js'
import {downloadPinned} from '../../src/util/download.js'
import {run} from '../../src/util/exec.js'
import {sharedTestCache} from './paths.js'

/**
 * Oracle digests for src/measure's SEV-SNP launch digest, from an independent implementation,
 * virtee/sev-snp-measure (Python), tag v0.0.13 (commit 5b6a79e86641a7ca1a377ba1848d1dcdc2498494),
 * run on this machine (Debian 12, Python 3.11.7, cryptography 48.0.0) from a `git archive` of that
 * tag, as
 *
 *   python3 sev-snp-measure.py --mode snp --ovmf FW --vcpus N --vcpu-type T --guest-features G
 *   python3 sev-snp-measure.py --mode snp --ovmf FW --vcpus N --vmm-type ec2   (and gce; G 0x1)
 *
 * for N 1, 2, 4, T EPYC-v4, EPYC-Milan, EPYC-Genoa and G 0x1 (QEMU's), 0x21 (with DebugSwap), on
 * the firmware below; and for measured direct boots on the synthetic SNP_AMDSEV_LIKE firmware of
 * test/helpers/synthetic-ovmf.ts with the test's kernel and initrd bytes: "full" adds --kernel
 * vmlinuz --initrd initrd --append 'console=ttyS0 root=/dev/vda1', "kernel-only" --kernel vmlinuz,
 * "disk" neither.
 *
 * What the oracle does where cvm-image refuses:
 * - Debian 12's OVMF_CODE_4M.fd and OVMF_CODE_4M.secboot.fd carry no SEV metadata (no footer entry
 *   dc886566-984a-4798-a75e-5585a7bf67cc). v0.0.13 does not refuse them: it prints a digest over the
 *   firmware pages and the VMSAs alone (exit 0; EPYC-v4, 1 vCPU: 68d8e64d...8c8a70 and
 *   467ea015...c9e15a). QEMU refuses to launch such a firmware under SNP ("Failed to locate SEV
 *   metadata header", target/i386/sev.c sev_snp_launch_finish), so no guest can report that value:
 *   cvm-image refuses it, and the test asserts the refusal.
 * - --kernel with a firmware whose metadata has no kernel hashes section (Debian 12's OVMF.fd):
 *   "Error: Kernel specified but OVMF metadata doesn't include SNP_KERNEL_HASHES section", exit 1;
 *   cvm-image refuses too.
 */

/** [VMM, vCPU type (QEMU only: EC2 and GCE fix the signature), vCPUs, guest features, digest] */
export type SnpOracleDigest = [SnpVmm, string | undefined, number, string, string]

export interface SnpOracleFirmware {
  /** the path in the package (Debian 12's installed; trixie's inside its .deb) */
  path: string
  sha256: string
  snp: SnpOracleDigest[]
}

/** Debian 12's ovmf 2022.11-6+deb12u2, as installed: the two images with SEV metadata. */
export const BOOKWORM_SNP_OVMF: SnpOracleFirmware[] = [
  {
    path: '/usr/share/ovmf/OVMF.fd',
    sha256: '7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773',
    snp: [
      ['qemu', 'EPYC-v4', 1, '0x1', '11570979c77a0adb515761a702527c8b9e11554e730552621d950988613a3a75c6ff1703f540bd22a9beede8fe7a97e3'],
      ['qemu', 'EPYC-v4', 1, '0x21', 'c32245cb607f82791b60757bf0b344d9030e5b5a107342e69c09e668ff28aca5af9ca1dc41ce74f5a4e81aeaeb5e7b54'],
      ['qemu', 'EPYC-Milan', 1, '0x1', '80479ca85a2b182c026f6a3a2f2b180ab968d84b17540dd30de39039e70b8c0c33ead2cae6d34e37750035fcff60bfc8'],
      ['qemu', 'EPYC-Milan', 1, '0x21', '179c6ad39ad318c8c8d18444634df7217b63695830f1cde0b2f01fe53d2cd2f4d39207f50bf659554e2f5ec4ee0f72b6'],
      ['qemu', 'EPYC-Genoa', 1, '0x1', '98988ff584a1d2b80cbac0c290d592aec2caf460ca58ec34f13c29d44b84dcc3141a8571bb1747aba84fe30c36b2c757'],
      ['qemu', 'EPYC-Genoa', 1, '0x21', 'ebac8ede8ae285cff4e24b1b8deb17d242e1c563a84e88c392e2b07abc81867f8e1cbc8d0f49decfa8570ecab7de9bcf'],
      ['qemu', 'EPYC-v4', 2, '0x1', 'a5b54e62ae971b58274dd24cc6c47b842662617036e7bd67d7326c07ac6363f35399ef933330a5ea160cead90a00603f'],
      ['qemu', 'EPYC-v4', 2, '0x21', '735869e96909943dd1bd046cf281aec588ae12c2c66ee6844e40e93d423722dbe535fd7dd7cb9a5f45a7adf8d6346c89'],
      ['qemu', 'EPYC-Milan', 2, '0x1', 'a175292a4a09fcfb760c5bd80c93ed667dbaafce6247d0f21fc06638658b3ebf2804d3019e2abed05cb6a9efe0a7464e'],
      ['qemu', 'EPYC-Milan', 2, '0x21', '5b3db052ccc5855965bddaedae87d1a3d1f3728bb93bc12f4eb86e07e842b7bdaa77e56f97c28eb52fdd93eb25e72305'],
      ['qemu', 'EPYC-Genoa', 2, '0x1', '143c7e1f11948ce6cbc700b16c3acff0797146df54b0b3d6c5899dc30dc8e31c34a2217d162a219bbbf7a2a1aedd104a'],
      ['qemu', 'EPYC-Genoa', 2, '0x21', '48c562826999dc60742c0eb2909b789d171fcbfcc2d906d242eef760d9548d19cb2a448f786ccf7a19857f590ed9429e'],
      ['qemu', 'EPYC-v4', 4, '0x1', '32ac9d7a17d28f7cd4404a4516d2f00519668c40ada2062351c36767e908eb3f090d66c33ab10f80150e00a4385b6d0f'],
      ['qemu', 'EPYC-v4', 4, '0x21', '4842cf9f01c38c50535c62e34990ed6c1e8ab4676304545465367358527c359ba164717398516457f8f986cea3e9a221'],
      ['qemu', 'EPYC-Milan', 4, '0x1', 'e9c10ab98f8086bf4a4993dcdc1f768b1128bcb02301d1791f1d3274329e790db2d12a301d66d99a462a13b5d87e2840'],
      ['qemu', 'EPYC-Milan', 4, '0x21', '968824524f03c9ab191fbb02ac50d286a4aa1b5922ed74a422a806ce376a9e589d16c8dd8202c256834c0d4013e2584b'],
      ['qemu', 'EPYC-Genoa', 4, '0x1', 'a509186122f6e4e095ebab39abf4aea568d9949b9e929d0759f45a3983dfc2df71404de97367aba26c08ddeebc3d7ba0'],
      ['qemu', 'EPYC-Genoa', 4, '0x21', '73d55f03b799be6fb6fee9cb50b12949677b4a0e647ee286337a1c23332aee4479675b8b7816858dfd5dd60d15de7ea3'],
      ['ec2', undefined, 1, '0x1', '0aaa035d47b06741a745a62cb88eade395f648a7383d71cc322fab9df33859ca3c188a0578534c01526f1b4c0f0b0eb6'],
      ['ec2', undefined, 4, '0x1', '247ad4ffd2aa671f172a61d8fc73337c2b3489dae4e53a8d9dd2d96d3b71b35ab008b3581c496f99810fe72bfd84d5ac'],
      ['gce', undefined, 1, '0x1', '6c5ed8d7d566801c36cf93c1e735e111d212d71892755cc9967a50c67f72e387909cfd3a3961b10d2799f7779f3beac6'],
      ['gce', undefined, 4, '0x1', 'dc9e0c41c8b0ca2000043e749d6fd77737d0ef146b3c9eaaaf693f50dd5ce57fbcb379cb4af9918c94d265a7e0bd8317'],
    ],
  },
  {
    path: '/usr/share/OVMF/OVMF_CODE.fd',
    sha256: 'd9b568def24088c92f34b5479e0ed7e44d0a4d4cea8a0f5716719180bba48106',
    snp: [
      ['qemu', 'EPYC-v4', 1, '0x1', 'a479327cbb0b50e876024c2dac7412d4e5e95c7315c1f8b0446f6d3be69fefba50766285475926737e4a70b155252f88'],
      ['qemu', 'EPYC-v4', 1, '0x21', 'c8804f337177df783bbdde3e199a765bf502035ca43ba7f5f236f59f27e3d96bb4c5d98d75530adcda8fa583d9222efb'],
      ['qemu', 'EPYC-Milan', 1, '0x1', '836d70ef6fb294660c2227b0f535c07f814a965442bccfa75a240f478a9f4abd1a63dd0c796f3a75d7f16b02b1d3b8ee'],
      ['qemu', 'EPYC-Milan', 1, '0x21', '2b8f662831e8bd53d9f31856f70ecf48bccf2d4614855fb88a4a29e8e9866dd09ee35b46c61c00e6e25a6b717b601008'],
      ['qemu', 'EPYC-Genoa', 1, '0x1', 'ef50880a86393b215b409af2f45070f816a80d3b7750ef6c3cead7883d555c585d50c4df46b12c1edbb77656144b9734'],
      ['qemu', 'EPYC-Genoa', 1, '0x21', '0a2e75b58845495a5acd10dc7a800fbe70eecabeb43e5b01cd3c846c947e5b54074784758aa09b9d6e190991d831eef8'],
      ['qemu', 'EPYC-v4', 2, '0x1', '0d3d4c4fbdd21581bb6f16903c06d29c40d021902ffffab0d6d6b71f76229401f432b6d29e9de6d982851c6f9ebe1cbf'],
      ['qemu', 'EPYC-v4', 2, '0x21', '6814e41b2926299717b35c0c4499a0a3fd39bb6d7800ea5a4f5ac25f33b811cde365984fd4e062e222cf0e39e835ce9f'],
      ['qemu', 'EPYC-Milan', 2, '0x1', '28c4e315b19983455da14071e8cdceafc703248eae74ba4cbedf5985aab9aa359bd37f2cd0775fa00dbc40193c4e6c79'],
      ['qemu', 'EPYC-Milan', 2, '0x21', '08c2e7d236514b5c91f572e0c090f5690bdad310711107abb5c6f129356d325ba79f9bd6dbb17c1d927232b3c6c2114e'],
      ['qemu', 'EPYC-Genoa', 2, '0x1', 'eafba8950e110689149de8d5e9dff8ac866b3e93c030a1b421816a541a1ca7beb7a27081f4a99f8d85ab6ba2d4be0425'],
      ['qemu', 'EPYC-Genoa', 2, '0x21', '4c3f15c10944733a35c665004cc08c01ea5a9a5388edd670d022a58fb82c05fd14994a6b38446824e9599004172eac17'],
      ['qemu', 'EPYC-v4', 4, '0x1', '022a949083cab59e19c5ca3f5f7ddb9c991874f49f76f72ea3f8cee1aa411e70c0a92766729328069f00b3053fc8ea6f'],
      ['qemu', 'EPYC-v4', 4, '0x21', '26cc81d0fee7dd20522422cc5054a07385fc0a077ec6792eca9a329bd40a9aa73ecb54889c2e2f937a2b84a6b9b8ffc8'],
      ['qemu', 'EPYC-Milan', 4, '0x1', 'cc2b38913550ecd41aadbcf2a5d309ae9d3cb0455c9e1f72892f6b18cfaea3f2e4f46a28b61ca0353724ee707c73177c'],
      ['qemu', 'EPYC-Milan', 4, '0x21', 'd44124322592a3390e2d258d4ad7df5897c9dd3958f906aa223588e327f97935802f9130b9009cf3dd60f9734cdc72f3'],
      ['qemu', 'EPYC-Genoa', 4, '0x1', 'df9a8dcee6313ae7b057a67d04502e4a7f5060ae988043d4066655d87bcf6cfa4b7d14b485cdf67bc118182f2ec18fd2'],
      ['qemu', 'EPYC-Genoa', 4, '0x21', 'a9eb0f8b08c7c5cba6c90e3b37b78b3a44ceaad250a00ccfc066e6a4871f18688e29134279260c731267b28a268d33ca'],
      ['ec2', undefined, 1, '0x1', 'cef92b064c677cf12e17f20b8c3f606eb4aad570eadbdfc82919209147ef1d340dc3ee65cbe0e8e3dd52dcec8b32a304'],
      ['ec2', undefined, 4, '0x1', '49389a8455e93dfa5b5c986ee06e64d1eafa21dcf6ba39b55eb65687c4f5e1e8aa9aa3ef7c16217ffaf47ac6a40b421b'],
      ['gce', undefined, 1, '0x1', 'b487c10cb362273ab887963c18e1a49d6a9a814e634e6406fb92d0130f44bfc252b46a1d697405ded17722336d8be609'],
      ['gce', undefined, 4, '0x1', 'da88893d22e0c644cdaaa3d62579fdfd7fc52fe5d2f7bd720f2bd358262c672dd0aedbcd0dca672e7df46dac95cf92e2'],
    ],
  },
]

/** Debian 12's images without SEV metadata, which QEMU and cvm-image refuse for SNP. */
export const BOOKWORM_NO_SNP_METADATA = [
  {path: '/usr/share/OVMF/OVMF_CODE_4M.fd', sha256: 'b157d97b1f69729514feb7f201d2cbe4957f23ab77920e361fe9f822ba49ca4c'},
  {path: '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd', sha256: 'd50189a486d22af418198226a3a5bcb6ddac775590f6a808bd629474ee034d62'},
]

/** Debian 13 (trixie)'s ovmf, from the Debian mirror's pool (its Packages index gave the path and sha256). */
export const TRIXIE_OVMF_DEB = {
  version: '2025.02-8+deb13u1',
  url: 'http://deb.debian.org/debian/pool/main/e/edk2/ovmf_2025.02-8+deb13u1_all.deb',
  sha256: '78e0d54df11fc77406cb7a0bc9a39e5bca6d1cbe06556b91d9a73491c52decdf',
}

/** Paths inside the trixie .deb. */
export const TRIXIE_SNP_OVMF: SnpOracleFirmware[] = [
  {
    path: 'usr/share/OVMF/OVMF_CODE_4M.fd',
    sha256: '624e06de18b4fa535e90db7160d00d3d07d206422b89999bf1e27d920264e4e0',
    snp: [
      ['qemu', 'EPYC-v4', 1, '0x1', '7f26ef7ff2e3168ca1113dc6bf7af9ca2624673b310d5637e8e983df8b28bc9ae36f20938719371c0d7798e4e9f4e850'],
      ['qemu', 'EPYC-v4', 1, '0x21', 'c26fbf1b3786c03808f35702c475e65dd58128ef85a4ea3a077d685a7210d9173cdf629e64d74067ef8715c5c66c0694'],
      ['qemu', 'EPYC-Milan', 1, '0x1', 'b36682b48bf692d5e4cc99718952e730a070cf604a31dc9b8bc17abc8c5ced34d6df5fd79defdf88bb6057913deb6aa1'],
      ['qemu', 'EPYC-Milan', 1, '0x21', '443b203f650c2d6e73c18a89b810d6a68dbef83058ff95538454389dfb70c562b89913df44926db4eb3c94b19747c061'],
      ['qemu', 'EPYC-Genoa', 1, '0x1', '1592c29fb0066d3b723d201d8f74bd8dd8a3f53617ea437e8cb1b85e1e8d629827a1e44c2703d9f24b9687ed7e5d4ece'],
      ['qemu', 'EPYC-Genoa', 1, '0x21', 'cb237a65c3f6d8eed0948c61f3679747a955691ce60d499afc04d0751fad96a223f5f0208afc69e51147ddba54a1839e'],
      ['qemu', 'EPYC-v4', 2, '0x1', '9452bbe94e9436f2e33b966589036049fae2deb04c4aa5f96324f2124825a80f4b0cbdfb003cc87d7da0e091772c1bda'],
      ['qemu', 'EPYC-v4', 2, '0x21', '80e60e32c08ec44c7e4f47f410fce1b094ad094c11083e767b36d495fdefc2ac3404f7a0250f5b2ed0f6fcfea74f8d43'],
      ['qemu', 'EPYC-Milan', 2, '0x1', 'a90b3c49c3372fc237f7c63d0b0c4b751f11f9df9760c7ec070c035c66a9c22f2e927491a9a4893076d325d5cb23e81f'],
      ['qemu', 'EPYC-Milan', 2, '0x21', 'd86be601f4f18daa62515b1efed3e6b42d3cd63a610e16b011c08c3d021ca671717292aba95b07eaaffcd11b13cefc12'],
      ['qemu', 'EPYC-Genoa', 2, '0x1', 'a98add18983aded37c6151ae8c6893209814660d78044eb2f6acb958e04600bf77d6f99ab9b84da311ae1872a6be4bc2'],
      ['qemu', 'EPYC-Genoa', 2, '0x21', '7a2f3807e7117b01e3f49f48db78b1fdfee6317e15ac32bbcb28085c18a5260cef4b9e9ad8d24c4677ce763b3ccadaa2'],
      ['qemu', 'EPYC-v4', 4, '0x1', '8770e5cc5d7605158d5d995855de39c00e1c516a92d330573ec331475f37cf96a81021b176678d56f4190e950a4cf776'],
      ['qemu', 'EPYC-v4', 4, '0x21', 'fde68837c3b5d4fcf4e899963fb7639a8a7fc7922d6454341187ce6a5019c84b0b325e9ede427cff3584cbd10ed781e1'],
      ['qemu', 'EPYC-Milan', 4, '0x1', 'dfead3f3e2e6567ca202058330a8600dd2f80660fda9e9f83c6d58f7f088bce3c0d3f609da12015c6f51b6c40a8a0643'],
      ['qemu', 'EPYC-Milan', 4, '0x21', 'f81f67e40652d99721df8447d4db3be9a34d1c0db91e9d189a491ab760d1aff698448675f799d08c2e6a8d7ede89910e'],
      ['qemu', 'EPYC-Genoa', 4, '0x1', '224d4b2183939f43b1e0ace3edb7ec959bf9a06787e24d3b5b634a6e1b4a2a80507db6ed33e478f13965c9c79cd55c55'],
      ['qemu', 'EPYC-Genoa', 4, '0x21', '3278d0316c602421228cd769bcc077401a751afb7f016d10016d142cc9339fcf1e9d8e23e479321ee0f97fdecdea8ed2'],
      ['ec2', undefined, 1, '0x1', 'ece44c722569828e91126eea1320070e9d436d93c6c28624a572dd8f518084b9845e16d6008696e9b5d2a2880b07696f'],
      ['ec2', undefined, 4, '0x1', 'ca0d88eaec36b622bae61f481cb76deffd26d85348797450aba3221636164a68e82e52bde390aa6fad17fd1470649729'],
      ['gce', undefined, 1, '0x1', '2ebb149e00fe38b5601688f7905f45d31a34a98107726ca25724b5217de3905712b09f37ff27f7d8999e4b985b3e77f6'],
      ['gce', undefined, 4, '0x1', '5c1da5a3637f2c4a1dc18d337255a54efc42f4f02c31c93d464e259337b8b4c949b3e38b21e14a8d8b41cd3ddb3bc77a'],
    ],
  },
  {
    path: 'usr/share/OVMF/OVMF_CODE_4M.secboot.fd',
    sha256: '1a46295574430cfb7f825ee3e4dc64b052acbef08e310377ed7c64cb757a9dc1',
    snp: [
      ['qemu', 'EPYC-v4', 1, '0x1', '22c8822fb9443a47d8b9cf2165eed30162a838027135ab30d0863ef9e64dd5128665419c0505130650a9909e96b1e770'],
      ['qemu', 'EPYC-v4', 1, '0x21', '8bdde792fa04777fafabb1a08455c41288e6e33100441878cee49729e356714abd6897827b45eb0ffaf6cb7bde994491'],
      ['qemu', 'EPYC-Milan', 1, '0x1', 'ea868d099cfdc2c107451397dbd4d13dc457a5bb9cef8c927013a080bcbe405a8234c8d6a8b65fd1cd580742377f9675'],
      ['qemu', 'EPYC-Milan', 1, '0x21', 'd5ce96bd376d2f8bf1ec9936bca6873a49bb6394135359633fb801d498b7ade7f0c543c3e41d544a770ecfb8239cdd2f'],
      ['qemu', 'EPYC-Genoa', 1, '0x1', '8e2b65d6d9b6a6456d7d321a52dd20e781d76ea25550591effbb6d28dd42ed668be9aab3997837f881ef7420cb269885'],
      ['qemu', 'EPYC-Genoa', 1, '0x21', 'b474a0494ac967087dad0c7b9c55cfd35eb55bc9b6ce5ec5acebd5a772ce45df105d72ad55d3456f2f30b92d3a410e3f'],
      ['qemu', 'EPYC-v4', 2, '0x1', 'b9f5a9bacab2b437f9ab26609e3c45d24a36d6953590b4fab437854f6c0c2eff313e0736d99bd3d422bf466b4351ae79'],
      ['qemu', 'EPYC-v4', 2, '0x21', '04c6d9134f144be0a6fba3225e68ba047100c9c2492e83e4f42bcac4864e4999b7622187b237439bf69f903927d31bca'],
      ['qemu', 'EPYC-Milan', 2, '0x1', 'afbe0c12a511907ebe80eeb9b5ce73693c0b9e331dec439c989fa1d6dfda9f149de841c4b635e61bde38aedfefec35ed'],
      ['qemu', 'EPYC-Milan', 2, '0x21', '40ecf654c35404ed64c86b4481da0d91d3878f35e4219cecb9c9352d787acb0d83cc04515aebe54ac86d653645b32a08'],
      ['qemu', 'EPYC-Genoa', 2, '0x1', '0c69ba17d1a7bcb790e47377295ccc015eca9defd716e080e4eb6b21fd6571f694770aa24ebc532eb31236ed0809aa77'],
      ['qemu', 'EPYC-Genoa', 2, '0x21', '29636047274b4d1ec8f7dac9a0464a152eb8f14d305357bc94b7b9135035941848ced9c14270d4f28b1768106dc6ead8'],
      ['qemu', 'EPYC-v4', 4, '0x1', '90a3d7af6133c849525ed8dc39dafa52fa65aa287c3f5b59207ac2e4aab85a93a4055c2fd798ebfca09777f665c7f0ca'],
      ['qemu', 'EPYC-v4', 4, '0x21', 'b95b0c9c1a7a00d3896d293017c4c1f2ccc83f6ea68ae8ac27009bc6b6481eef2365c11844659e193494df76bb06c233'],
      ['qemu', 'EPYC-Milan', 4, '0x1', 'ad4c5baf28f820d5c0a8ab84e4e01f34df8bad360d5be90d4411bf8caf639ae181bcaf92b89c56e2ae8780b9c2dc7664'],
      ['qemu', 'EPYC-Milan', 4, '0x21', '841a6ec062e828bfa5e79bc103a9180994012accafd7791c3fc92285376e9c7b1eb333f5e091be16925ced3fcffbfcb5'],
      ['qemu', 'EPYC-Genoa', 4, '0x1', 'e9498e7f6c1ab84fefcb9db6664c89fe3a9e1acbe5063acf0f3202e4fbfda8234157872fb230109949ee994babe09d66'],
      ['qemu', 'EPYC-Genoa', 4, '0x21', 'b909b8a66f9355069f2ef84d6ccbdba0358147cf76542115e7f0a6adb9e43459de545f77e484c33675e16639a9ee687b'],
      ['ec2', undefined, 1, '0x1', 'a66a8986964357d06830394b5bd26a05ca481ad2d79c83ac72e27bfbcf9569feed6f72fcf6b7fe084d5a1c01aa81f7a6'],
      ['ec2', undefined, 4, '0x1', '0eb3c9a2e36a4c74bfea0b9de59d0825d17ccd930d4fd337fbe09c6056f4cc6cb223f2dc6e3b914fb0150541fa1ee2ee'],
      ['gce', undefined, 1, '0x1', 'a7ceb164fd36927f2bb47d68c3b6f512225bbc9b4517ef0257773b2236f3ed535ccfbae251e974bbe4a25757c9104f20'],
      ['gce', undefined, 4, '0x1', 'd9e294a5f9657997f3efd820b38bb29d0d75408f218369429f67d80a8b185c9645e03da29e1e30e727f9d57a84669ace'],
    ],
  },
  {
    path: 'usr/share/ovmf/OVMF.fd',
    sha256: '14954040cc754ade0c625ac3470ea46d4c14318b5b1396de4ef77090203d76db',
    snp: [
      ['qemu', 'EPYC-v4', 1, '0x1', '6eef547a9fcf5720c5c04883fe85788d29de46b55a51e554467029b554a3352e66d2f3c71b84cea937d19a1a6c41596f'],
      ['qemu', 'EPYC-v4', 1, '0x21', 'b248ef14a8c3f47ffd3e4d5d0ead2921a72556f625ed24bb9b8d0d3be2bd8dd1230bf774018ea810ad7032da4889ce7f'],
      ['qemu', 'EPYC-Milan', 1, '0x1', '1066da73495d1df04d21222f8277ea5e18be8cc33e99ad44e13060292f9320ddf67af6cdd10ccfc22222bb9d6ae3f96c'],
      ['qemu', 'EPYC-Milan', 1, '0x21', 'c8cb125edae362ccaa183d4b75e8031cb07bc12e14af9b063292fa592c4ec8557df6d41e774155ed5dc8b9f4bf8f8695'],
      ['qemu', 'EPYC-Genoa', 1, '0x1', 'e16765c33b15fe94ef66a1fb04ff6a25828e11b95ea48c534194f829812c57d16530418db5d54b7ed0573eb9a1ddb3a2'],
      ['qemu', 'EPYC-Genoa', 1, '0x21', '27ed955b20109b2e7577428d887afd147b2547374454f870fa227ac5c60e7c28e46320c4c541602a9f2ab202add882b5'],
      ['qemu', 'EPYC-v4', 2, '0x1', 'dde22ec32131c388cdd74935c4fe73726cdbf327422c9fcdb96c2984283fb826993ec008addab81fd33109bad66d9fd9'],
      ['qemu', 'EPYC-v4', 2, '0x21', 'a992aa920e7247162a3bd45bb8a7da8d68c77638f35b71095d42e79defc4344ae3b1fb6f36f4d424e974f3e060ff47db'],
      ['qemu', 'EPYC-Milan', 2, '0x1', 'b55b618cb48696814dc1d65d8be960d7c8916bf06dd0139fbc0e5a3d1ebd678c647af7abfb7da5ab1815054bf00ab69e'],
      ['qemu', 'EPYC-Milan', 2, '0x21', '7e996af8e2ea5fc179b61993b0f37f419d9f8826dac2e2aa2919799b621e3078e8d66769a80397af82051f0ab18a45bb'],
      ['qemu', 'EPYC-Genoa', 2, '0x1', 'ed426290151aa7f862f293e7d2ac87d5cb83e1aa630bcf905d1b29a354ab04ad5ee73f6352ac96d867d70694c49d4f14'],
      ['qemu', 'EPYC-Genoa', 2, '0x21', '9b1d5eacb1a2ad24793569457c192ece583d848131b5d38f736adc1df3472e5742d1a4085385007e282d24ef9c1f43cb'],
      ['qemu', 'EPYC-v4', 4, '0x1', '676826e902524799a067f7c43b3ab0101dce73a2506d41436dd2f8472fa208081f11f9e65ca5d2439785732a0bfd8339'],
      ['qemu', 'EPYC-v4', 4, '0x21', '2c9592c804f680d1134db543220cc030e0238808ae5d2a40dd67b8da407c6d8ff9d7b74eb51709ada814f824c67dc5d8'],
      ['qemu', 'EPYC-Milan', 4, '0x1', '23a7cfea107ad340deb77960c711065bea0527cb551ec5eb3ec8234c730947fe05f172939695b2079efb5c3f841e733a'],
      ['qemu', 'EPYC-Milan', 4, '0x21', '262ec2759d41adc759b94296fbacfe9056ff971d29704c6180aaf2454dd9d1ff937faf1931eb9e05fde847a3610fe9e3'],
      ['qemu', 'EPYC-Genoa', 4, '0x1', '2ace5a7d2e782e2ac29a6b6f9a13280594bb018ba5131144c4c6f51a8c2c94e3a7c20f92effcb1808bd4252e88d44a61'],
      ['qemu', 'EPYC-Genoa', 4, '0x21', '8894665a5dcd309f7d4f0d0087fcc33ccf14fc292b6b058a2e8e3af5e0333b3a324844916e7b5e74d673ad5e215d4310'],
      ['ec2', undefined, 1, '0x1', '4be4ac22b30df2abc7a92c250735b853f3d064ceec5a041509bf3f00dd4fd57a1868c37f7a956a9fb0b42aeef8232480'],
      ['ec2', undefined, 4, '0x1', '3ac79bc9d4dd638a47ab9891cf157812cc3a4110aa0a32bcc50ee06d70b9d084f21b9bd4e8c93b07f03c7f1f2adc241c'],
      ['gce', undefined, 1, '0x1', '44e3320c58e7513b456449f920ee867660b4ae145d82fe37000b7486cf7f515210dc3cc833fd77ff2bc24e20f5edea6d'],
      ['gce', undefined, 4, '0x1', 'f690a2ef1bd89bcad41ec178213f3223be367abf5d0fa517af52ceb6e5398dfb853391457330f1268e106865d6ad51a4'],
    ],
  },
]

/** [boot, VMM, vCPU type, vCPUs, guest features, digest] on SNP_AMDSEV_LIKE */
export const SYNTHETIC_SNP: ['full' | 'kernel-only' | 'disk', SnpVmm, string | undefined, number, string, string][] = [
  ['full', 'qemu', 'EPYC-v4', 1, '0x1', 'c8cdf78b6ba6601841a8ae0fa97766834e8ab620e7ff56386b0f57b49915e1d225f1d5b5227113ee45a073451061cce9'],
  ['full', 'qemu', 'EPYC-Milan', 4, '0x21', 'a880bdc9e1b7b9912c44e9496cbb595cb33d97e168dbd5449c446e206aae2ea39b6239e3ddcdd5f90ab48a1f0a2ae284'],
  ['kernel-only', 'qemu', 'EPYC-v4', 2, '0x1', '1f5baa584b2a3487f9a50bb66e405f01313f2f4f153ae857d6f86c152e5d94d73563b91ec69673a363ff62c0ae92a52a'],
  ['disk', 'qemu', 'EPYC-v4', 2, '0x1', '492ed304392192d5ffd3e626de679d679eea850f9d21f5ec520e8748b6f26d6b630d856682e2f6e0edea6b29b8e06455'],
  ['full', 'ec2', undefined, 2, '0x1', '9b4881dd9f6af5b74c65a6664fa0ac5a4b8288961ac43c87038d441a7290a615fe07f0ef219387d61ebac008cbe94cf2'],
  ['disk', 'gce', undefined, 2, '0x1', '01a630aef47879e3db23a50031f97679d0d7c658529d2678131cc6f45532f98f9eb019c5b21307dbeb43680be849c24a'],
]
export const SYNTHETIC_SNP_FIRMWARE_SHA256 = '9a02881eb4dc1b55f515cdcc341beb54272040febb95a4c5700a36c4d153fe2a'

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** A Debian 12 firmware file, or a skip saying why the oracle cannot speak for it. */
export function bookwormFirmware(fw: {path: string; sha256: string}, skip: (note: string) => never): Buffer {
  if (!existsSync(fw.path)) skip(`${fw.path} is absent (package ovmf): the oracle digests were computed for Debian 12's ovmf 2022.11-6+deb12u2`)
  const bytes = readFileSync(fw.path)
  const actual = sha256(bytes)
  if (actual !== fw.sha256) skip(`${fw.path} has sha256 ${actual}, not ${fw.sha256} (ovmf 2022.11-6+deb12u2) that the oracle digests were computed for`)
  return bytes
}

/**
 * The folder where trixie's ovmf .deb is unpacked (dpkg-deb -x), downloaded once into the shared
 * test cache and checked against its pinned sha256; a skip, with the reason, when the mirror cannot
 * be reached or no longer has that version. A download with other bytes fails.
 */
export async function trixieOvmf(skip: (note: string) => never): Promise<string> {
  const cache = sharedTestCache()
  const dir = join(cache, `ovmf-${TRIXIE_OVMF_DEB.version}`)
  if (existsSync(join(dir, 'usr/share/OVMF'))) return dir
  const deb = await downloadPinned(TRIXIE_OVMF_DEB.url, TRIXIE_OVMF_DEB.sha256, join(cache, 'downloads', `ovmf_${TRIXIE_OVMF_DEB.version}_all.deb`)).catch((e: unknown) => {
    if (e instanceof StageError) skip(`trixie's ovmf ${TRIXIE_OVMF_DEB.version} could not be fetched from the Debian mirror (${e.message}): the trixie SNP digests are not checked`)
    throw e
  })
  const tmp = `${dir}.tmp-${process.pid}`
  await rm(tmp, {recursive: true, force: true})
  await mkdir(tmp, {recursive: true})
  await run('dpkg-deb', ['-x', deb, tmp])
  await rename(tmp, dir).catch(async (e: NodeJS.ErrnoException) => {
    // another test process unpacked it first
    if (e.code !== 'ENOTEMPTY' && e.code !== 'EEXIST') throw e
    await rm(tmp, {recursive: true, force: true})
  })
  return dir
}
