import {execFileSync} from 'node:child_process'
import {randomUUID} from 'node:crypto'
import {chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {sha256} from '../src/util/fsx.js'
import {cli} from './helpers/cli.js'
import {repoRoot} from './helpers/paths.js'
import {ensureUnprivilegedUser, runAs, unprivilegedDir} from './helpers/unprivileged.js'

/**
 * Issue #17: a disk-image base is read as the one file given and nothing else. A corpus of hostile
 * images, made here, each pointing at a canary: an ext4 disk whose one file holds a unique string,
 * so an image that reached it would carry that file into rootfs.tar. Each is built by the real CLI
 * (`build --base-file --base-sha256 --until base`) with wrappers for qemu-img and bwrap first on
 * PATH that log every command line. Each build exits 2 naming what it found, the canary string is
 * in no file under the cache, and no logged command line names the image: no tool opened it. The
 * forms cvm-image accepts (a plain qcow2, a streamOptimized vmdk) still read, and their conversion
 * is logged, confined, so the log is known to see the tools' calls.
 */

const CANARY = `cvm-image-canary-${randomUUID()}`
const MARKER = `cvm-image-accepted-${randomUUID()}`
let work: string
let project: string
let wrappers: string
let log: string
let canaryDisk: string

function sh(cmd: string, args: string[]): void {
  execFileSync(cmd, args, {cwd: work, stdio: 'pipe'})
}

/** an ext4 disk (no partition table) of 8 MiB whose /etc/secret holds `text` */
function ext4With(name: string, text: string): string {
  const tree = join(work, `${name}-tree`)
  mkdirSync(join(tree, 'etc'), {recursive: true})
  writeFileSync(join(tree, 'etc/secret'), `${text}\n`)
  writeFileSync(join(tree, 'etc/os-release'), 'ID=test\n')
  const disk = join(work, name)
  sh('mkfs.ext4', ['-q', '-F', '-d', tree, disk, '8M'])
  return disk
}

beforeAll(async () => {
  if (!existsSync(join(repoRoot, 'dist', 'commands', 'build.js'))) throw new Error('dist/ is not built: run scripts/test (or npx tsc -p .) first')
  work = await mkdtemp(join(tmpdir(), 'cvm-hostile-'))
  chmodSync(work, 0o755)
  project = join(work, 'project')
  for (const d of ['recipes', 'kernels', 'templates']) cpSync(join(repoRoot, d), join(project, d), {recursive: true})
  for (const format of ['qcow2', 'vmdk', 'raw']) {
    writeFileSync(join(project, 'recipes', `disk-${format}.yaml`), `extends: debian-12\nname: disk-${format}\nbase:\n  kind: image\n  format: ${format}\n  url: https://example.invalid/disk.${format}\n  sha256: null\n`)
  }
  canaryDisk = ext4With('canary.ext4', CANARY)
  // every call of the converter and of the sandbox, logged, then run for real
  wrappers = join(work, 'bin')
  log = join(work, 'tools.log')
  mkdirSync(wrappers)
  writeFileSync(log, '')
  chmodSync(log, 0o666)
  for (const tool of ['qemu-img', 'bwrap']) {
    writeFileSync(join(wrappers, tool), `#!/bin/sh\nprintf '%s\\n' "${tool} $*" >> ${log}\nexec /usr/bin/${tool} "$@"\n`)
    chmodSync(join(wrappers, tool), 0o755)
  }
})

afterAll(async () => {
  if (work) await rm(work, {recursive: true, force: true})
})

/** Every file under `dir` whose bytes hold `text`. */
function filesHolding(dir: string, text: string): string[] {
  const found: string[] = []
  const needle = Buffer.from(text)
  const walk = (d: string) => {
    for (const e of readdirSync(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.isFile() && readFileSync(p).includes(needle)) found.push(p)
    }
  }
  if (existsSync(dir)) walk(dir)
  return found
}

function toolCalls(): string[] {
  return readFileSync(log, 'utf8').split('\n').filter(Boolean)
}

async function build(image: string, format: string, cache: string) {
  const t = Date.now()
  const r = await cli(['build', `disk-${format}`, '--root', project, '--cache-dir', cache, '--base-file', image, '--base-sha256', sha256(readFileSync(image)), '--until', 'base'], {env: {PATH: `${wrappers}:${process.env.PATH}`, CI: '1'}})
  console.log(`build --until base of ${image.slice(work.length + 1)} as ${format}: exit ${r.code} in ${(Date.now() - t) / 1000} s`)
  return r
}

interface Hostile {
  name: string
  format: 'qcow2' | 'vmdk' | 'raw'
  make: () => string
  /** what the refusal names */
  names: string
}

/** an empty 8 MiB monolithicSparse vmdk made by qemu-img, its embedded descriptor rewritten in place by `edit` */
function sparseWithDescriptor(name: string, edit: (descriptor: string) => string): string {
  sh('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicSparse', name, '8M'])
  const image = readFileSync(join(work, name))
  const at = Number(image.readBigUInt64LE(28)) * 512
  const room = Number(image.readBigUInt64LE(36)) * 512
  Buffer.from(edit(image.subarray(at, at + room).toString('latin1').replace(/\0+$/, '')).padEnd(room, '\0'), 'latin1').copy(image, at)
  writeFileSync(join(work, name), image)
  return join(work, name)
}

const HOSTILE: Hostile[] = [
  {
    name: 'a qcow2 whose backing file is the canary disk',
    format: 'qcow2',
    make: () => (sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', canaryDisk, '-F', 'raw', 'backing.qcow2']), join(work, 'backing.qcow2')),
    names: "qcow2 backing file '<canary>'",
  },
  {
    name: 'a qcow2 whose backing file is a json: name for the canary disk',
    format: 'qcow2',
    make: () => (sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', `json:{"driver":"raw","file":{"driver":"file","filename":"${canaryDisk}"}}`, '-F', 'raw', 'json.qcow2', '8M']), join(work, 'json.qcow2')),
    names: `qcow2 backing file 'json:{"driver":"raw","file":{"driver":"file","filename":"<canary>"}}'`,
  },
  {
    name: 'a qcow2 whose external data file is a copy of the canary disk',
    format: 'qcow2',
    make: () => {
      const data = join(work, 'data.ext4')
      sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `data_file=${data},data_file_raw=on`, 'datafile.qcow2', '8M'])
      // data_file_raw: the data file is the disk, byte for byte
      cpSync(canaryDisk, data)
      return join(work, 'datafile.qcow2')
    },
    names: "qcow2 external data file '<work>/data.ext4' (header extension 0x44415441)",
  },
  {
    name: 'a vmdk descriptor (a few lines of text) with a FLAT extent on the canary disk',
    format: 'vmdk',
    make: () => {
      const sectors = statSync(canaryDisk).size / 512
      writeFileSync(join(work, 'flat.vmdk'), `# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\n# Extent description\nRW ${sectors} FLAT "${canaryDisk}" 0\n`)
      return join(work, 'flat.vmdk')
    },
    names: `it is a vmdk descriptor file (createType 'monolithicFlat', extent 'RW 16384 FLAT "<canary>" 0')`,
  },
  {
    name: 'a monolithicSparse vmdk whose embedded descriptor names a parent: a descriptor with a FLAT extent on the canary disk',
    format: 'vmdk',
    make: () => {
      const sectors = statSync(canaryDisk).size / 512
      writeFileSync(join(work, 'parent-flat.vmdk'), `# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW ${sectors} FLAT "${canaryDisk}" 0\n`)
      sh('qemu-img', ['create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicSparse', 'child.vmdk', '8M'])
      // the embedded descriptor, rewritten in place as a hostile file would carry it
      const image = readFileSync(join(work, 'child.vmdk'))
      const at = Number(image.readBigUInt64LE(28)) * 512
      const room = Number(image.readBigUInt64LE(36)) * 512
      const text = image.subarray(at, at + room).toString('latin1').replace(/\0+$/, '').replace('parentCID=ffffffff', `parentCID=12345678\nparentFileNameHint="${join(work, 'parent-flat.vmdk')}"`)
      Buffer.from(text.padEnd(room, '\0'), 'latin1').copy(image, at)
      writeFileSync(join(work, 'child.vmdk'), image)
      return join(work, 'child.vmdk')
    },
    names: "vmdk parent file '<work>/parent-flat.vmdk' (descriptor field parentFileNameHint at byte ",
  },
  {
    // issue #29: QEMU finds the parent (and its CID) by substring, comment lines included
    name: 'a monolithicSparse vmdk whose parent is named on a # comment line',
    format: 'vmdk',
    make: () => {
      const sectors = statSync(canaryDisk).size / 512
      writeFileSync(join(work, 'parent-flat2.vmdk'), `# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW ${sectors} FLAT "${canaryDisk}" 0\n`)
      return sparseWithDescriptor('comment.vmdk', (d) => d.replace('# Disk DescriptorFile\n', `# Disk DescriptorFile\n# parentCID=12345678 parentFileNameHint="${join(work, 'parent-flat2.vmdk')}"\n`))
    },
    // the descriptor is at sector 1; the name follows the first line and the comment's parentCID
    names: `vmdk parent file '<work>/parent-flat2.vmdk' (descriptor field parentFileNameHint at byte ${512 + '# Disk DescriptorFile\n# parentCID=12345678 '.length}, on a # comment line, which QEMU reads all the same)`,
  },
  {
    // issue #29: capacity 0 makes QEMU read the embedded descriptor as a descriptor file; its one bare SPARSE extent is a sibling, not itself
    name: 'a sparse vmdk with capacity 0 whose extent is a sibling holding the canary',
    format: 'vmdk',
    make: () => {
      sh('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', canaryDisk, 'canary-sibling.vmdk'])
      const sectors = statSync(canaryDisk).size / 512
      const file = sparseWithDescriptor('capacity0.vmdk', (d) => d.replace('# Disk DescriptorFile\n', '# Disk DescriptorFile\n# createType="twoGbMaxExtentSparse"\n').replace(/RW \d+ SPARSE "[^"]*"/, `RW ${sectors} SPARSE "canary-sibling.vmdk"`))
      const image = readFileSync(file)
      image.writeBigUInt64LE(0n, 12)
      writeFileSync(file, image)
      return file
    },
    names: 'vmdk sparse header with capacity 0 and an embedded descriptor at sector 1; QEMU reads such a file as a descriptor file',
  },
  {
    name: 'a qcow2 with a backing file, declared raw',
    format: 'raw',
    make: () => (sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', canaryDisk, '-F', 'raw', 'as-raw.qcow2']), join(work, 'as-raw.qcow2')),
    names: 'its bytes are a qcow2 image, not raw',
  },
  {
    name: 'a qcow2 with a backing file, declared vmdk',
    format: 'vmdk',
    make: () => (sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', canaryDisk, '-F', 'raw', 'as-vmdk.qcow2']), join(work, 'as-vmdk.qcow2')),
    names: 'its bytes are a qcow2 image, not vmdk',
  },
]

describe('hostile disk-image bases are refused before any tool opens them', () => {
  for (const h of HOSTILE) {
    it(`${h.name}: exit 2 naming the reference, the canary nowhere in the cache, the image never given to a tool`, async () => {
      const image = h.make()
      // the image really reaches the canary: qemu-img, unconfined, reads its file (not for the type-confused ones)
      if (h.format !== 'raw' && !h.names.startsWith('its bytes')) {
        const check = join(work, `${h.format}-check.raw`)
        sh('qemu-img', ['convert', '-f', h.format, '-O', 'raw', image, check])
        expect(readFileSync(check).includes(Buffer.from(CANARY)), 'the hostile image does not reach the canary: the test proves nothing').toBe(true)
        await rm(check)
      }
      const cache = await mkdtemp(join(work, 'cache-'))
      const before = toolCalls().length
      const r = await build(image, h.format, cache)
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toContain(`the ${h.format} base ${image}: ${h.names.replaceAll('<canary>', canaryDisk).replaceAll('<work>', work)}`)
      expect(r.stderr).toContain('The image may be valid, but this form is not supported.')
      expect(r.stderr).toContain(`hint: if you trust the image and every file it refers to, make it one self-contained raw disk where those files are: \`qemu-img convert -O raw ${image} base.raw\`, then build with \`base.format: raw\``)
      expect(filesHolding(cache, CANARY)).toEqual([])
      expect(toolCalls().slice(before).filter((l) => l.includes(image))).toEqual([])
    })
  }
})

describe('the accepted forms still read, converted confined', () => {
  let plain: string
  beforeAll(() => {
    plain = ext4With('plain.ext4', MARKER)
  })

  for (const [name, format, make] of [
    ['a plain qcow2', 'qcow2', () => (sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', plain, 'plain.qcow2']), join(work, 'plain.qcow2'))],
    ['a streamOptimized vmdk made by qemu-img', 'vmdk', () => (sh('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', plain, 'stream.vmdk']), join(work, 'stream.vmdk'))],
    ['a raw disk', 'raw', () => plain],
  ] as const) {
    it(`${name}: its files in rootfs.tar, its conversion logged inside the sandbox`, async () => {
      const image = make()
      const cache = await mkdtemp(join(work, 'cache-'))
      const before = toolCalls().length
      const r = await build(image, format, cache)
      expect(r.code, r.stderr).toBe(0)
      const tars = filesHolding(cache, MARKER).filter((f) => f.endsWith('rootfs.tar'))
      expect(tars).toHaveLength(1)
      // every tool ran in bwrap (issue #29: sfdisk and debugfs too), reading the cache's copy of the image, never the user's file
      const calls = toolCalls().slice(before)
      expect(calls.filter((l) => !l.startsWith('bwrap '))).toEqual([])
      expect(calls.filter((l) => l.includes(image))).toEqual([])
      expect(calls.filter((l) => / -- sfdisk --json \/in\/disk$/.test(l))).toHaveLength(1)
      expect(calls.filter((l) => / -- debugfs -f \/work\/debugfs\.cmds \/in\/disk\?offset=\d+$/.test(l)).length).toBeGreaterThan(0)
      for (const call of calls) expect(call).not.toMatch(/--(ro-)?bind \/(etc|home|root|var|tmp|proc|dev) /)
      const conversions = calls.filter((l) => l.includes(' -- qemu-img '))
      if (format === 'raw') {
        // a raw disk needs no converter: debugfs reads it as it is
        expect(conversions).toEqual([])
      } else {
        // qemu-img ran once, seeing the image as /in/base.<format> and nothing of the host but /usr
        expect(conversions).toHaveLength(1)
        expect(conversions[0]).toMatch(new RegExp(`^bwrap --unshare-all .*--ro-bind /usr /usr .*--ro-bind ${cache}/downloads/\\S+ /in/base\\.${format} --bind \\S+/disk\\.raw /out/disk\\.raw --chdir / -- qemu-img convert -f ${format} -O raw /in/base\\.${format} /out/disk\\.raw$`))
      }
    })
  }

  it.skipIf(process.getuid?.() !== 0)('converts as an unprivileged user too (bubblewrap in a user namespace)', async () => {
    const user = ensureUnprivilegedUser()
    const image = join(work, 'plain.qcow2')
    chmodSync(image, 0o644)
    const cache = unprivilegedDir(join(work, 'cache-unprivileged'), user)
    const r = await runAs(user, process.execPath, [join(repoRoot, 'bin', 'run.js'), 'build', 'disk-qcow2', '--root', project, '--cache-dir', cache, '--base-file', image, '--base-sha256', sha256(readFileSync(image)), '--until', 'base'], {
      cwd: work,
      env: {PATH: `${wrappers}:${process.env.PATH}`, CI: '1'},
      reject: false,
    })
    expect(r.exitCode, r.stderr).toBe(0)
    expect(filesHolding(cache, MARKER).filter((f) => f.endsWith('rootfs.tar'))).toHaveLength(1)
  })
})
