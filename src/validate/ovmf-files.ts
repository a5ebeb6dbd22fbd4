/**
 * Where Debian's ovmf package puts the firmware files validation boots and measure reads: the one
 * place they are written (doctor's requirements, the host probe, the boots and the hints use these).
 */
export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd'
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd'
/** Debian's OVMF built with SMM, for Secure Boot (OVMF_CODE_4M.snakeoil.fd and .ms.fd are links to it) */
export const OVMF_CODE_SECBOOT = '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd'
/** Debian's variable store with Secure Boot on and its snakeoil certificate (SNAKEOIL_CERT) enrolled: an image that key signs boots (test/secure-boot.test.ts) */
export const OVMF_VARS_SNAKEOIL = '/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd'
export const SNAKEOIL_CERT = '/usr/share/ovmf/PkKek-1-snakeoil.pem'
/**
 * Debian's OVMF as one image (code and variables) for QEMU's -bios, the way an SEV-SNP guest takes
 * its firmware; in Debian 12 it carries the SEV metadata an SNP launch needs, which OVMF_CODE lacks
 * (docs/measurements.md "SEV-SNP").
 */
export const OVMF_SNP_BIOS = '/usr/share/ovmf/OVMF.fd'
/**
 * The TDX guest's firmware (TDVF), also one image for -bios: Debian 12's OVMF.fd carries the TDX
 * metadata GUID (e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae) beside the SEV one, so it is the same file.
 */
export const OVMF_TDX_BIOS = OVMF_SNP_BIOS
