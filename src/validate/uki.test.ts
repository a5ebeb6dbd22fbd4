import {mkdtemp, readFile, rm, truncate, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {sha256} from '../util/fsx.js'
import {run} from '../util/exec.js'
import {extractUki, findEsp, ukiParts} from './uki.js'

const STUB = '/usr/lib/systemd/boot/efi/linuxx64.efi.stub'

describe('the UKI on the disk image ESP (real sfdisk, mkfs.vfat, mtools, objcopy)', () => {
  let dir: string
  let disk: string
  let uki: Buffer
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cvm-uki-test-'))
    await writeFile(join(dir, 'cmdline'), 'root=PARTUUID=1234 rw console=ttyS0\n')
    await writeFile(join(dir, 'linux'), Buffer.alloc(70_000, 7))
    await writeFile(join(dir, 'osrel'), 'ID=debian\n')
    // the section layout of docs/design.md "The unified kernel image"
    await run('objcopy', [
      '--add-section', `.osrel=${join(dir, 'osrel')}`, '--change-section-vma', '.osrel=0x20000',
      '--add-section', `.cmdline=${join(dir, 'cmdline')}`, '--change-section-vma', '.cmdline=0x30000',
      '--add-section', `.linux=${join(dir, 'linux')}`, '--change-section-vma', '.linux=0x2000000',
      STUB, join(dir, 'uki.efi'),
    ])
    uki = await readFile(join(dir, 'uki.efi'))
    const esp = join(dir, 'esp.img')
    await truncate(esp, 0).catch(() => undefined)
    await run('mkfs.vfat', ['-C', '-F', '32', esp, String(40 * 1024)])
    await run('mmd', ['-i', esp, '::EFI', '::EFI/BOOT'])
    await run('mcopy', ['-i', esp, join(dir, 'uki.efi'), '::EFI/BOOT/BOOTX64.EFI'])
    disk = join(dir, 'disk.raw')
    await writeFile(disk, '')
    await truncate(disk, 64 * 1024 * 1024)
    await run('sfdisk', ['--quiet', disk], {input: 'label: gpt\nstart=2048, size=81920, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=83968, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n'})
    await run('dd', [`if=${esp}`, `of=${disk}`, 'bs=1M', 'seek=1', 'conv=notrunc', 'status=none'])
  }, 60_000)
  afterAll(async () => {
    await rm(dir, {recursive: true, force: true})
  })

  it('finds the ESP in the GPT and copies the very bytes of \\EFI\\BOOT\\BOOTX64.EFI', async () => {
    expect(await findEsp(disk)).toEqual({offset: 1024 * 1024, size: 81920 * 512})
    const got = await extractUki(disk, dir)
    expect(got.sha256).toBe(sha256(uki))
  })

  it('reads the command line and the kernel from the UKI sections', () => {
    const parts = ukiParts(uki)
    expect(parts.cmdline).toBe('root=PARTUUID=1234 rw console=ttyS0')
    expect(parts.linux?.length).toBe(70_000)
    expect(parts.initrd).toBeUndefined()
  })

  it('a disk without GPT is an input error that says what validate expects', async () => {
    const bad = join(dir, 'bad.raw')
    await writeFile(bad, Buffer.alloc(4096))
    await expect(findEsp(bad)).rejects.toThrow(/no GPT header/)
  })
})
