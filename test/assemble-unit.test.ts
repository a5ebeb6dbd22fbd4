import {mkdirSync, mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {InputError} from '../src/errors.js'
import {diskIds} from '../src/disk/ids.js'
import {planLayout, sfdiskScript} from '../src/disk/gpt.js'
import {EFI_STUB, pinPeTimestamp} from '../src/disk/uki.js'
import {stageEnv} from '../src/pipeline/stage.js'
import {assembleStage, kernelCmdline} from '../src/pipeline/stages/assemble.js'
import {projectDirs} from '../src/recipe/load.js'
import {StageError} from '../src/errors.js'
import {repoRoot} from './helpers/paths.js'
import {debian12Recipe} from './helpers/recipes.js'

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

describe('free space for the disk', () => {
  it('assemble refuses before any work when the cache\'s file system cannot hold image.size_gib, naming it and the bytes', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'cvm-space-'))
    try {
      const st = statfsSync(dir)
      const freeGiB = Math.ceil((st.bavail * st.bsize) / 1024 ** 3)
      if (freeGiB + 1 > 2048) t.skip() // image.size_gib stops at 2048: a larger free space cannot be exceeded
      const recipe = debian12Recipe((r) => (r.image.size_gib = freeGiB + 1))
      const base = join(dir, 'base')
      mkdirSync(base)
      writeFileSync(join(base, 'rootfs.tar'), Buffer.alloc(10240))
      const work = join(dir, 'work')
      mkdirSync(work)
      const io = {
        out: join(dir, 'out'),
        work,
        upstream: {base: {stage: 'base', key: 'b', dir: base, meta: {}}, compile: {stage: 'compile', key: 'c', dir: join(dir, 'compile'), meta: {release: '6.1.0-cvm'}}},
        progress: () => {},
        log: () => {},
        logFile: join(dir, 'stage.log'),
        signal: new AbortController().signal,
      } as const
      const ctx = {recipe, dirs: projectDirs(repoRoot), options: {}, cacheDir: dir}
      const err = await assembleStage.run({...io, env: stageEnv(ctx)} as never, await assembleStage.inputs(ctx)).catch((e) => e)
      expect(err).toBeInstanceOf(StageError)
      expect(err.exitCode).toBe(1)
      expect(err.message).toMatch(new RegExp(`^not enough free space for assemble's ${freeGiB + 1} GiB disk and its rootfs \\(image\\.size_gib\\): ${(freeGiB + 1) * 1024 ** 3 + 10240} bytes needed, \\d+ free on the file system of ${work} \\(\\S+ \\S+ mounted at /`))
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })
})
