/**
 * One expected measurement, as `cvm-image measure` lists them (docs/measurements.md). A leaf file:
 * every kind of measurement (SEV launch digests here, TPM PCR predictions beside them) gives entries
 * of this shape, so a pipeline reads them all the same way.
 */
export type MeasurementKind = 'sev-launch' | 'sev-es-launch' | 'snp-launch' | 'tpm-pcr4' | 'tpm-pcr7' | 'tpm-pcr11'

/** The inputs a measurement can depend on; `params` says what each was. */
export type MeasurementInput =
  | 'firmware'
  | 'vcpus'
  | 'cpu-signature'
  | 'vmsa-form'
  /** SEV-SNP: the SEV features every VMSA carries */
  | 'guest-features'
  /** SEV-SNP: the VMM that launches the guest (QEMU, EC2, GCE), which decides the vCPUs' start state */
  | 'vmm'
  | 'kernel'
  | 'initrd'
  | 'cmdline'
  /** the UKI on the disk's ESP, byte for byte */
  | 'uki'
  /** the events firmware measures by itself (edk2's standard ones assumed) */
  | 'firmware-events'
  /** which boot options the firmware tried before the disk's */
  | 'boot-order'
  /** whether UEFI Secure Boot is on */
  | 'secure-boot'
  /** the firmware's Secure Boot variables (PK, KEK, db, dbx): its variable store */
  | 'secure-boot-keys'

export interface MeasurementEntry {
  kind: MeasurementKind
  /** lower-case hex */
  value: string
  /** sha384 for the SEV-SNP launch digest, sha256 for the rest */
  algorithm: 'sha256' | 'sha384'
  /** every input that, changed, changes the value; nothing else does */
  dependsOn: MeasurementInput[]
  /** the value of each input this entry was computed for, and what identifies it (a file's path and sha256) */
  params: Record<string, string | number>
  /** one line: what the value is and what compares against it */
  description: string
}
