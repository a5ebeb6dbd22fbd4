import {mkdtempSync, rmSync, truncateSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {AMDSEV_LIKE_ENTRIES, syntheticOvmf} from '../../test/helpers/synthetic-ovmf.js'
import {InputError} from '../errors.js'
import {launchMeasurements, type LaunchMeasureOptions} from './launch.js'

const dir = mkdtempSync(join(tmpdir(), 'cvm-measure-launch-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))
const firmware = join(dir, 'fw.fd')
writeFileSync(firmware, syntheticOvmf({entries: AMDSEV_LIKE_ENTRIES}))
const base: LaunchMeasureOptions = {firmware: [firmware], modes: ['sev', 'sev-es'], cpus: [2], cpuTypes: ['EPYC-v4'], vmsaForms: ['legacy']}

async function refusal(opts: Partial<LaunchMeasureOptions>): Promise<InputError> {
  const e = await launchMeasurements({...base, ...opts}).then(() => undefined, (err: unknown) => err)
  expect(e).toBeInstanceOf(InputError)
  return e as InputError
}

describe('launchMeasurements: what it lists', () => {
  it('one SEV entry per firmware and one SEV-ES entry per vCPU count x vCPU type x VMSA form, each naming what it depends on', async () => {
    const entries = await launchMeasurements({...base, cpus: [1, 2, 4], cpuTypes: ['EPYC-v4', 'EPYC-Milan'], vmsaForms: ['legacy', 'legacy-debug-swap', 'init2']})
    expect(entries.map((e) => e.kind)).toEqual(['sev-launch', ...Array(18).fill('sev-es-launch')])
    expect(new Set(entries.map((e) => e.value)).size).toBe(19)
    expect(entries[0].dependsOn).toEqual(['firmware'])
    expect(entries[0].description).toMatch(/disk boot: binds the firmware, not the disk/)
    expect(entries[1].params).toMatchObject({vcpus: 1, cpuType: 'EPYC-v4', cpuSignature: '0x00800f12', vmsaForm: 'legacy', apResetAddress: '0x0080b004'})
    expect(entries[1].params.vmsaFormMeans).toMatch(/KVM_SEV_ES_INIT/)
  })

  it('with --kernel, every entry also depends on the kernel, initrd and command line and names their hashes', async () => {
    const kernel = join(dir, 'vmlinuz')
    writeFileSync(kernel, 'kernel')
    const entries = await launchMeasurements({...base, kernelBoot: {kernel, append: 'quiet'}})
    for (const e of entries) {
      expect(e.dependsOn).toEqual(expect.arrayContaining(['kernel', 'initrd', 'cmdline']))
      expect(e.params).toMatchObject({kernel, initrd: '(none)', cmdline: 'quiet', initrdSha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'})
      expect(e.description).toMatch(/measured direct boot/)
    }
  })
})

describe('launchMeasurements: bad input is refused before anything is computed', () => {
  it('an unknown vCPU type, listing the known models', async () => {
    const e = await refusal({cpuTypes: ['EPYC-v9']})
    expect(e.message).toBe('unknown vCPU type "EPYC-v9"')
    expect(e.details[0]).toMatch(/EPYC-v4.*EPYC-Milan/)
    expect(e.hint).toMatch(/family\/model\/stepping/)
  })

  it('a vCPU count that is not a whole number from 1', async () => {
    expect((await refusal({cpus: [0]})).message).toMatch(/^--cpus 0: a vCPU count is a whole number from 1/)
  })

  it('a firmware that is missing, a directory, or larger than the 8 MiB QEMU maps (a disk given by mistake)', async () => {
    expect((await refusal({firmware: [join(dir, 'nope.fd')]})).message).toMatch(/^cannot read firmware .*nope\.fd: ENOENT/)
    expect((await refusal({firmware: [dir]})).message).toBe(`firmware ${dir} is not a file`)
    const disk = join(dir, 'disk.raw')
    writeFileSync(disk, '')
    truncateSync(disk, 9 * 1024 * 1024)
    expect((await refusal({firmware: [disk]})).message).toMatch(/is 9437184 bytes: QEMU maps at most 8388608 bytes of flash/)
  })

  it('a kernel file that cannot be read', async () => {
    expect((await refusal({kernelBoot: {kernel: join(dir, 'no-vmlinuz')}})).message).toMatch(/^cannot read --kernel .*no-vmlinuz/)
  })
})
