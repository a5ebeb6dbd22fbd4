import {existsSync} from 'node:fs'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {EFI_STUB, buildUki} from '../disk/uki.js'
import {InputError} from '../errors.js'
import {run} from '../util/exec.js'
import {authenticodeSha256} from './authenticode.js'
import {extendPcr11Phases, predictPcr11, predictPcr11FromUki, predictPcr4FromUki, replayPcr, stubKernelStart, stubSections} from './pcr.js'

// PCR 11 as systemd-stub 252 measures a UKI (docs/pcr-measurements.md), checked against Debian 12's
// own calculation of it: systemd-measure, from the systemd package, on the same section files.
// PCR 4: the events firmware measures, the UKI's and kernel's digests from authenticode.ts.

const SYSTEMD_MEASURE = '/usr/lib/systemd/systemd-measure'

/** A tool the test cannot do without: its absence fails the test, naming the package. */
function needTool(path: string, pkg: string): void {
  if (!existsSync(path)) throw new Error(`${path} is missing: install the Debian package ${pkg} (apt-get install ${pkg}, or cvm-image doctor --install as root)`)
}

/** PCR 11 (sha256) as systemd-measure calculates it from section files, before any boot phase. */
async function systemdMeasure(files: Record<string, string>, phase = ':'): Promise<string> {
  const args = ['calculate', ...Object.entries(files).map(([k, v]) => `--${k}=${v}`), '--bank=sha256', `--phase=${phase}`]
  const r = await run(SYSTEMD_MEASURE, args, {what: 'calculate PCR 11 with systemd-measure'})
  const m = /^11:sha256=([0-9a-f]{64})$/m.exec(r.stdout)
  if (!m) throw new Error(`systemd-measure printed no PCR 11 value: ${r.stdout}`)
  return m[1]
}

/** Section `name`'s bytes as objcopy extracts them from a PE image. */
async function objcopySection(uki: string, name: string, out: string): Promise<string> {
  await run('objcopy', ['-O', 'binary', `--only-section=${name}`, uki, out])
  return out
}

/** The file offset of section `name`'s header, read here apart from the code under test. */
function sectionHeaderOffset(pe: Buffer, name: string): number {
  const coff = pe.readUInt32LE(0x3c) + 4
  const table = coff + 20 + pe.readUInt16LE(coff + 16)
  for (let i = 0; i < pe.readUInt16LE(coff + 2); i++) {
    const at = table + i * 40
    if (pe.toString('latin1', at, at + 8).replace(/\0+$/, '') === name) return at
  }
  throw new Error(`no section ${name}`)
}

/** deterministic bytes that are not all alike */
function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length)
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff
  return b
}

describe('PCR 11: what systemd-stub 252 measures of the UKI (checked against systemd-measure)', () => {
  let dir: string
  const f = (name: string) => join(dir, name)
  const parts = {
    linux: pattern(300_000, 1),
    osrel: Buffer.from('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'),
    cmdline: Buffer.from('root=PARTUUID=4f68bce3-e8cd-4db1-96e7-fbcaf984b709 rw console=ttyS0'),
    initrd: pattern(70_001, 2),
    splash: pattern(5_000, 3),
    dtb: pattern(777, 4),
    pcrpkey: Buffer.from('-----BEGIN PUBLIC KEY-----\nnot a real key\n-----END PUBLIC KEY-----\n'),
  }
  let uki: string
  let ukiWithInitrd: string

  beforeAll(async () => {
    needTool(SYSTEMD_MEASURE, 'systemd')
    needTool(EFI_STUB, 'systemd-boot-efi')
    dir = await mkdtemp(join(tmpdir(), 'cvm-pcr11-test-'))
    for (const [k, v] of Object.entries(parts)) await writeFile(f(k), v)
    // the UKI as the assemble stage makes it (src/disk/uki.ts)
    uki = f('uki.efi')
    await buildUki({vmlinuz: f('linux'), cmdlineFile: f('cmdline'), osReleaseFile: f('osrel')}, uki, {sourceDateEpoch: 1_700_000_000})
    ukiWithInitrd = f('uki-initrd.efi')
    await buildUki({vmlinuz: f('linux'), cmdlineFile: f('cmdline'), osReleaseFile: f('osrel'), initrd: f('initrd')}, ukiWithInitrd, {sourceDateEpoch: 1_700_000_000})
  }, 60_000)
  afterAll(async () => {
    if (dir) await rm(dir, {recursive: true, force: true})
  })

  it('from the sections a UKI of ours has (.linux, .osrel, .cmdline) equals systemd-measure on the same files', async () => {
    const got = predictPcr11({'.linux': parts.linux, '.osrel': parts.osrel, '.cmdline': parts.cmdline})
    expect(got.value).toBe(await systemdMeasure({linux: f('linux'), osrel: f('osrel'), cmdline: f('cmdline')}))
    expect(got.events.map((e) => e.what)).toEqual([
      'section name .linux\\0', 'section .linux (300000 bytes)',
      'section name .osrel\\0', `section .osrel (${parts.osrel.length} bytes)`,
      'section name .cmdline\\0', `section .cmdline (${parts.cmdline.length} bytes)`,
    ])
  })

  it('measures every section systemd-measure knows in the stub\'s order, whatever order they are given in', async () => {
    const got = predictPcr11({
      '.pcrpkey': parts.pcrpkey, '.dtb': parts.dtb, '.splash': parts.splash, '.initrd': parts.initrd,
      '.cmdline': parts.cmdline, '.osrel': parts.osrel, '.linux': parts.linux,
    })
    const files = Object.fromEntries(Object.keys(parts).map((k) => [k, f(k)]))
    expect(got.value).toBe(await systemdMeasure(files))
    expect(got.events.filter((_, i) => i % 2 === 0).map((e) => e.what)).toEqual(
      ['.linux', '.osrel', '.cmdline', '.initrd', '.splash', '.dtb', '.pcrpkey'].map((n) => `section name ${n}\\0`))
  })

  it('leaves out an empty section and .pcrsig, as the stub and systemd-measure do', async () => {
    await writeFile(f('empty'), '')
    const got = predictPcr11({'.linux': parts.linux, '.osrel': Buffer.alloc(0), '.cmdline': parts.cmdline, '.pcrsig': Buffer.from('{"sha256":[]}')})
    expect(got.value).toBe(await systemdMeasure({linux: f('linux'), osrel: f('empty'), cmdline: f('cmdline')}))
    expect(got.events).toHaveLength(4)
  })

  it('read from a UKI made as assemble makes it equals systemd-measure on the sections objcopy extracts', async () => {
    for (const [file, names] of [[uki, ['linux', 'osrel', 'cmdline']], [ukiWithInitrd, ['linux', 'osrel', 'cmdline', 'initrd']]] as const) {
      const files: Record<string, string> = {}
      for (const n of names) files[n] = await objcopySection(file, `.${n}`, f(`extracted.${n}`))
      // the stub measures what was put in, not the section's padded raw data
      for (const n of names) expect(await readFile(files[n])).toEqual(parts[n])
      expect((await predictPcr11FromUki(file)).value).toBe(await systemdMeasure(files))
    }
  })

  it('measures a section whose VirtualSize is larger than its raw data zero-filled to VirtualSize, as it lies in memory', async () => {
    const pe = await readFile(uki)
    const at = sectionHeaderOffset(pe, '.cmdline')
    const rawSize = pe.readUInt32LE(at + 16)
    const virtualSize = rawSize + 0x100
    pe.writeUInt32LE(virtualSize, at + 8)
    await writeFile(f('uki-vsize.efi'), pe)
    // the file bytes after .cmdline's raw data are .linux's: the stub never sees them there
    await writeFile(f('cmdline-in-memory'), Buffer.concat([parts.cmdline, Buffer.alloc(virtualSize - parts.cmdline.length)]))
    expect((await predictPcr11FromUki(f('uki-vsize.efi'))).value)
      .toBe(await systemdMeasure({linux: f('linux'), osrel: f('osrel'), cmdline: f('cmdline-in-memory')}))
  })

  it('takes a section whose name starts with a known name as that section, the later header winning (pe.c locate_sections)', async () => {
    await writeFile(f('linux2'), pattern(4096, 9))
    await run('objcopy', ['--add-section', `.linuxZ=${f('linux2')}`, '--change-section-vma', '.linuxZ=0x4000000', uki, f('uki-two-linux.efi')])
    expect((await predictPcr11FromUki(f('uki-two-linux.efi'))).value)
      .toBe(await systemdMeasure({linux: f('linux2'), osrel: f('osrel'), cmdline: f('cmdline')}))
  })

  it('after the boot phases systemd-pcrphase measures (sysinit, ready) equals systemd-measure --phase=sysinit:ready', async () => {
    const got = extendPcr11Phases(await predictPcr11FromUki(uki), ['sysinit', 'ready'])
    expect(got.value).toBe(await systemdMeasure({linux: f('linux'), osrel: f('osrel'), cmdline: f('cmdline')}, 'sysinit:ready'))
    expect(got.events.slice(-2).map((e) => [e.what, e.type])).toEqual([['boot phase sysinit', null], ['boot phase ready', null]])
  })

  it('refuses a UKI the stub would not boot or could not measure the same way: no .linux, not a PE, sections overlapping in memory', async () => {
    await run('objcopy', ['--add-section', `.osrel=${f('osrel')}`, '--change-section-vma', '.osrel=0x20000', EFI_STUB, f('no-linux.efi')])
    await expect(predictPcr11FromUki(f('no-linux.efi'))).rejects.toThrow(/no \.linux section: systemd-stub would refuse to boot it/)
    expect(() => stubSections(parts.linux)).toThrow(InputError)
    expect(() => stubSections(parts.linux)).toThrow(/not a PE image/)
    await run('objcopy', [
      '--add-section', `.osrel=${f('osrel')}`, '--change-section-vma', '.osrel=0x20000',
      '--add-section', `.cmdline=${f('cmdline')}`, '--change-section-vma', '.cmdline=0x20010',
      '--add-section', `.linux=${f('linux')}`, '--change-section-vma', '.linux=0x2000000',
      EFI_STUB, f('overlap.efi'),
    ])
    await expect(predictPcr11FromUki(f('overlap.efi'))).rejects.toThrow(/overlaps section/)
  })
})

describe('PCR 4: what UEFI firmware measures of the UKI and of the kernel the stub loads', () => {
  let dir: string
  const f = (name: string) => join(dir, name)
  /** the well-known digests every edk2 event log shows for these two events */
  const CALLING_EFI_APPLICATION = '3d6772b4f84ed47595d72a2c4c5ffd15f5bb72c7507fe26f2aaee2c69d5633ba'
  const SEPARATOR = 'df3f619804a92fdb4057192dc43dd748ea778adc52bc498ce80524c014b81119'
  const BOOT_EFI = '/usr/lib/systemd/boot/efi/systemd-bootx64.efi'

  /** a UKI whose .linux is a PE image (systemd-boot's, as a stand-in kernel) with this MajorImageVersion */
  async function ukiWithPeKernel(name: string, majorImageVersion: number): Promise<{uki: string; kernel: string}> {
    const kernel = Buffer.from(await readFile(BOOT_EFI))
    kernel.writeUInt16LE(majorImageVersion, kernel.readUInt32LE(0x3c) + 24 + 44)
    await writeFile(f(`${name}.kernel`), kernel)
    const uki = f(`${name}.efi`)
    await buildUki({vmlinuz: f(`${name}.kernel`), cmdlineFile: f('cmdline'), osReleaseFile: f('osrel')}, uki, {sourceDateEpoch: 1_700_000_000})
    return {uki, kernel: f(`${name}.kernel`)}
  }
  beforeAll(async () => {
    needTool(EFI_STUB, 'systemd-boot-efi')
    needTool(BOOT_EFI, 'systemd-boot-efi')
    dir = await mkdtemp(join(tmpdir(), 'cvm-pcr4-test-'))
    await writeFile(f('cmdline'), 'root=PARTUUID=1 rw console=ttyS0')
    await writeFile(f('osrel'), 'ID=debian\n')
  }, 60_000)
  afterAll(async () => {
    if (dir) await rm(dir, {recursive: true, force: true})
  })

  it('without Secure Boot: the ReadyToBoot action and separator, the UKI, then the kernel the stub starts with LoadImage', async () => {
    const {uki, kernel} = await ukiWithPeKernel('loadimage', 1)
    const got = await predictPcr4FromUki(uki)
    expect(got.events.map((e) => e.type)).toEqual(['EV_EFI_ACTION', 'EV_SEPARATOR', 'EV_EFI_BOOT_SERVICES_APPLICATION', 'EV_EFI_BOOT_SERVICES_APPLICATION'])
    expect(got.events[0].digest).toBe(CALLING_EFI_APPLICATION)
    expect(got.events[1].digest).toBe(SEPARATOR)
    // Authenticode digests (src/measure/authenticode.test.ts checks them against osslsigncode):
    // the UKI file as it is, and the kernel exactly as it was put into .linux
    expect(got.events[2].digest).toBe(authenticodeSha256(await readFile(uki)).toString('hex'))
    expect(got.events[3].digest).toBe(authenticodeSha256(await readFile(kernel)).toString('hex'))
    expect(got.value).toBe(replayPcr(4, got.events).value)
    expect(stubKernelStart(await readFile(kernel))).toBe('load-image')
  })

  it('with Secure Boot, or a kernel too old for LoadImage (MajorImageVersion 0: EFI handover), the kernel is not measured', async () => {
    const {uki} = await ukiWithPeKernel('loadimage-sb', 1)
    const secure = await predictPcr4FromUki(uki, {secureBoot: true})
    expect(secure.events.map((e) => e.type)).toEqual(['EV_EFI_ACTION', 'EV_SEPARATOR', 'EV_EFI_BOOT_SERVICES_APPLICATION'])
    const old = await ukiWithPeKernel('handover', 0)
    expect(stubKernelStart(await readFile(old.kernel))).toBe('handover')
    expect((await predictPcr4FromUki(old.uki)).events).toHaveLength(3)
    expect(secure.value).not.toBe((await predictPcr4FromUki(uki)).value)
  })

  it('a boot option tried before the disk\'s adds "Returning from ..." and "Calling ..." before the UKI', async () => {
    const {uki} = await ukiWithPeKernel('attempts', 1)
    const got = await predictPcr4FromUki(uki, {earlierBootAttempts: 1})
    expect(got.events.slice(0, 4).map((e) => e.what)).toEqual([
      'Calling EFI Application from Boot Option', 'separator (00000000)',
      'Returning from EFI Application from Boot Option', 'Calling EFI Application from Boot Option',
    ])
    expect(got.events[3].digest).toBe(CALLING_EFI_APPLICATION)
    expect(got.events).toHaveLength(6)
  })

  it('a UKI whose .linux is no PE image is an input error: systemd-stub would not start it', async () => {
    await writeFile(f('not-pe'), Buffer.alloc(5000, 1))
    await buildUki({vmlinuz: f('not-pe'), cmdlineFile: f('cmdline'), osReleaseFile: f('osrel')}, f('not-pe.efi'), {sourceDateEpoch: 1_700_000_000})
    await expect(predictPcr4FromUki(f('not-pe.efi'))).rejects.toThrow(/Bad kernel image/)
    await expect(predictPcr4FromUki(f('not-pe.efi'))).rejects.toBeInstanceOf(InputError)
  })
})
