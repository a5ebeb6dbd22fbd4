import {execFileSync} from 'node:child_process'
import {chmodSync, cpSync, existsSync, mkdirSync, readFileSync, statfsSync, statSync, writeFileSync} from 'node:fs'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {run} from '../src/util/exec.js'
import {sha256File} from '../src/util/fsx.js'
import {cli} from './helpers/cli.js'
import {repoRoot} from './helpers/paths.js'

/**
 * Issue #17, resource bounds: a base that would fill the cache's file system stops before it does,
 * exit 1 naming the stage, and leaves the file system as empty as it found it. The cache is a
 * 64 MiB tmpfs (mounting one needs root); the bases are small files that grow: compressed tarballs
 * of a 256 MiB file of one repeated line (gz, xz, zst) and a qcow2 of 1 GiB virtual size.
 */

const isRoot = process.getuid?.() === 0
const MiB = 1024 * 1024
let work: string
let project: string
let small: string
let wrappers: string
let log: string

// the compressors run for seconds on 256 MiB: asynchronously, so that this file's process stays responsive (docs/testing.md, "stalls")
const sh = (script: string) => run('sh', ['-ec', script], {cwd: work, what: 'make the test bases'})

beforeAll(async () => {
  if (!isRoot) return
  if (!existsSync(join(repoRoot, 'dist', 'commands', 'build.js'))) throw new Error('dist/ is not built: run scripts/test (or npx tsc -p .) first')
  work = await mkdtemp(join(tmpdir(), 'cvm-bounds-'))
  project = join(work, 'project')
  for (const d of ['recipes', 'kernels', 'templates']) cpSync(join(repoRoot, d), join(project, d), {recursive: true})
  for (const format of ['tar.gz', 'tar.xz', 'tar.zst', 'qcow2']) {
    writeFileSync(join(project, 'recipes', `b-${format.replace('.', '-')}.yaml`), `extends: debian-12\nname: b\nbase:\n  kind: image\n  format: ${format}\n  url: https://example.invalid/base.${format}\n  sha256: null\n`)
  }
  // a tarball of one 256 MiB file, compressed three ways; not zeros, which a decompressor may write as holes
  mkdirSync(join(work, 'tree'))
  await writeFile(join(work, 'tree', 'bomb'), Buffer.alloc(256 * MiB, 'cvm-image bomb\n'))
  await sh(`tar -C tree -cf bomb.tar .
    gzip -1 -c bomb.tar > bomb.tar.gz & gz=$!; xz -0 -T0 -c bomb.tar > bomb.tar.xz & xz=$!; zstd -1 -q -c bomb.tar > bomb.tar.zst & zst=$!
    wait $gz; wait $xz; wait $zst
    rm bomb.tar tree/bomb
    qemu-img create -q -f qcow2 big.qcow2 1G`)
  // the cache: a small file system of its own
  small = join(work, 'small')
  mkdirSync(small)
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=0755', 'cvm-bounds', small])
  wrappers = join(work, 'bin')
  log = join(work, 'tools.log')
  mkdirSync(wrappers)
  writeFileSync(log, '')
  for (const tool of ['qemu-img', 'bwrap']) {
    writeFileSync(join(wrappers, tool), `#!/bin/sh\nprintf '%s\\n' "${tool} $*" >> ${log}\nexec /usr/bin/${tool} "$@"\n`)
    chmodSync(join(wrappers, tool), 0o755)
  }
}, 300_000)

afterAll(async () => {
  if (small) execFileSync('umount', [small])
  if (work) await rm(work, {recursive: true, force: true})
})

function usedBytes(): number {
  const s = statfsSync(small)
  return (s.blocks - s.bfree) * s.bsize
}

async function build(format: string, file: string) {
  const cache = await mkdtemp(join(small, 'cache-'))
  const t = Date.now()
  const r = await cli(['build', `b-${format.replace('.', '-')}`, '--root', project, '--cache-dir', cache, '--base-file', file, '--base-sha256', await sha256File(file), '--until', 'base'], {env: {PATH: `${wrappers}:${process.env.PATH}`, CI: '1'}})
  console.log(`build --until base of ${file.slice(work.length + 1)} on a 64 MiB cache: exit ${r.code} in ${(Date.now() - t) / 1000} s, ${usedBytes()} bytes used after`)
  return {...r, cache}
}

describe.skipIf(!isRoot)('a base that would fill the cache stops before it does (a 64 MiB tmpfs cache: needs root to mount)', () => {
  for (const format of ['tar.gz', 'tar.xz', 'tar.zst']) {
    it(`a ${format} of 256 MiB: exit 1 naming the stage, its partial tarball removed`, async () => {
      const r = await build(format, join(work, `bomb.${format}`))
      expect(r.code, r.stderr).toBe(1)
      expect(r.stderr).toMatch(new RegExp(`base: the ${format.replace('.', '\\.')} base \\S+ would fill the file system of \\S+: stopped after \\d+ bytes of its tarball, with \\d+ bytes free when it began \\(tmpfs cvm-bounds mounted at ${small}\\); its partial output was removed`))
      expect(r.stderr).not.toMatch(/no space left/i)
      // nothing is left but the checked copy of the --base-file, which the cache keeps (issue #29: read from one copy)
      expect(usedBytes()).toBeLessThan(MiB + statSync(join(work, `bomb.${format}`)).size)
      await rm(r.cache, {recursive: true})
    })
  }

  it('a qcow2 of 1 GiB virtual size: exit 1 before qemu-img runs, nothing written but the checked copy of the file', async () => {
    const before = readFileSync(log, 'utf8')
    const r = await build('qcow2', join(work, 'big.qcow2'))
    expect(r.code, r.stderr).toBe(1)
    expect(r.stderr).toMatch(/not enough free space for the base stage's conversion of the qcow2 disk to raw \(its virtual size, 1073741824 bytes\): 1073741824 bytes needed, \d+ free on the file system of \S+ \(tmpfs cvm-bounds mounted at /)
    expect(readFileSync(log, 'utf8')).toBe(before)
    expect(usedBytes()).toBeLessThan(MiB + statSync(join(work, 'big.qcow2')).size)
    await rm(r.cache, {recursive: true})
  })
})
