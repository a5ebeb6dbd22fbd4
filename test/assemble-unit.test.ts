import {readFileSync} from 'node:fs'

import {describe, expect, it} from 'vitest'

import {InputError} from '../src/errors.js'
import {diskIds} from '../src/disk/ids.js'
import {planLayout, sfdiskScript} from '../src/disk/gpt.js'
import {EFI_STUB, pinPeTimestamp} from '../src/disk/uki.js'
import {kernelCmdline} from '../src/pipeline/stages/assemble.js'

describe('kernel command line', () => {
  it('puts root=PARTUUID first and adds rw once', () => {
    expect(kernelCmdline('u', 'console=tty0 console=ttyS0')).toBe('root=PARTUUID=u rw console=tty0 console=ttyS0')
    expect(kernelCmdline('u', 'console=tty0 console=ttyS0 rw')).toBe('root=PARTUUID=u console=tty0 console=ttyS0 rw')
    expect(kernelCmdline('u', ' ro  quiet ')).toBe('root=PARTUUID=u ro quiet')
  })

  it('refuses a recipe that sets root= itself', () => {
    expect(() => kernelCmdline('u', 'root=/dev/sda1 console=ttyS0')).toThrow(InputError)
  })
})

describe('derived ids', () => {
  it('are stable for a seed, differ between seeds and purposes, and are valid UUIDs', () => {
    const a = diskIds('seed-a')
    expect(diskIds('seed-a')).toEqual(a)
    expect(diskIds('seed-b').rootPartUuid).not.toBe(a.rootPartUuid)
    expect(new Set([a.diskGuid, a.espPartUuid, a.rootPartUuid, a.rootFsUuid, a.rootHashSeed]).size).toBe(5)
    for (const u of [a.diskGuid, a.rootPartUuid, a.rootFsUuid]) expect(u).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(a.espSerial).toMatch(/^[0-9a-f]{8}$/)
  })
})

describe('GPT layout', () => {
  it('ESP at 1 MiB, root after it, 1 MiB aligned, clear of the backup GPT', () => {
    const l = planLayout({sizeGiB: 4, espMiB: 256, diskGuid: 'd', espPartUuid: 'e', rootPartUuid: 'r'})
    expect(l.esp.start).toBe(2048)
    expect(l.root.start).toBe(2048 + 256 * 2048)
    expect(l.root.size % 2048).toBe(0)
    expect((l.root.start + l.root.size) * 512).toBeLessThanOrEqual(4 * 1024 ** 3 - 33 * 512)
    expect(sfdiskScript(l)).toContain('type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=r, name="root"')
  })

  it('refuses a disk too small for a root', () => {
    expect(() => planLayout({sizeGiB: 1, espMiB: 1000, diskGuid: 'd', espPartUuid: 'e', rootPartUuid: 'r'})).toThrow(/no room/)
  })
})

describe('PE timestamp', () => {
  it('rewrites the COFF timestamp and keeps a checksum the PE format accepts (same as objcopy computes)', () => {
    const stub = readFileSync(EFI_STUB)
    const pe = stub.readUInt32LE(0x3c)
    const original = stub.readUInt32LE(pe + 4 + 20 + 64)
    // same timestamp: the checksum we compute must equal the one in systemd's signed-off stub
    const same = pinPeTimestamp(Buffer.from(stub), stub.readUInt32LE(pe + 8))
    expect(same.readUInt32LE(pe + 4 + 20 + 64)).toBe(original)
    const pinned = pinPeTimestamp(Buffer.from(stub), 1_735_689_600)
    expect(pinned.readUInt32LE(pe + 8)).toBe(1_735_689_600)
  })
})
