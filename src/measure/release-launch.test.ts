import {existsSync} from 'node:fs'

import {describe, expect, it} from 'vitest'

import {OVMF_CODE, OVMF_SNP_BIOS} from '../validate/ovmf-files.js'
import {measureImage} from './image.js'
import {releaseLaunchOptions} from './release-launch.js'

/** What a release's manifest lists of the launch digests: SEV-SNP only for a kernel that can be an SNP guest. */
describe('releaseLaunchOptions', () => {
  const both = () => true

  it('an SNP-capable kernel: SEV, SEV-ES and SEV-SNP digests (the -bios OVMF, QEMU, guest features 0x1, the recipe\'s vCPU count)', async (ctx) => {
    const {options, notes} = releaseLaunchOptions({vcpus: 2, snpGuest: true, present: both})
    expect(options).toMatchObject({firmware: [OVMF_CODE], snpFirmware: [OVMF_SNP_BIOS], modes: ['sev', 'sev-es', 'snp'], cpus: [2], guestFeatures: [1n], vmms: ['qemu']})
    expect(notes).toEqual([])
    if (![OVMF_CODE, OVMF_SNP_BIOS].every((p) => existsSync(p))) ctx.skip(`${OVMF_CODE} or ${OVMF_SNP_BIOS} is absent (package ovmf)`)
    const {measurements} = await measureImage(options)
    expect(measurements.filter((m) => m.kind === 'snp-launch').map((m) => [m.params.firmware, m.params.vcpus, m.params.guestFeatures, m.params.vmm])).toEqual([[OVMF_SNP_BIOS, 2, '0x1', 'qemu']])
    expect(measurements.filter((m) => m.kind === 'sev-es-launch')).toHaveLength(3)
  })

  it('a kernel that cannot be an SNP guest: no SNP digest, and a note saying why', () => {
    const {options, notes} = releaseLaunchOptions({vcpus: 2, snpGuest: false, present: both})
    expect(options.modes).toEqual(['sev', 'sev-es'])
    expect(options.snpFirmware).toEqual([])
    expect(notes).toEqual(['no SEV-SNP launch digests: the kernel cannot be an SEV-SNP guest (kernel check: SNP guest support is not built in)'])
  })

  it('a machine without the firmware files: no digests of them, each named in a note', () => {
    const {options, notes} = releaseLaunchOptions({vcpus: 1, snpGuest: true, present: () => false})
    expect(options.firmware).toEqual([])
    expect(options.modes).toEqual(['sev', 'sev-es'])
    expect(notes.map((n) => n.split(':')[0])).toEqual(['no SEV launch digests', 'no SEV-SNP launch digests'])
    expect(notes[1]).toMatch(/no \/usr\/share\/ovmf\/OVMF\.fd/)
  })
})
