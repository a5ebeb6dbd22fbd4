import {execFileSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {InputError} from '../errors.js'
import {type DiskFormat, inspectDiskImage} from './inspect.js'

/**
 * The header reader on images made here: by qemu-img where it can make the form, otherwise by
 * changing the bytes qemu-img wrote (a bit, a field, a descriptor line), as a hostile file would.
 */

const dir = mkdtempSync(join(tmpdir(), 'cvm-inspect-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))
const MiB = 1024 * 1024

function qemuImg(...args: string[]): void {
  execFileSync('qemu-img', args, {cwd: dir, stdio: 'pipe'})
}
function path(name: string): string {
  return join(dir, name)
}
/** The file with `bytes` written at `offset`. */
function patched(from: string, to: string, offset: number, bytes: Buffer): string {
  const b = readFileSync(path(from))
  bytes.copy(b, offset)
  writeFileSync(path(to), b)
  return path(to)
}
async function refusal(file: string, format: DiskFormat): Promise<InputError> {
  const e = await inspectDiskImage(file, format).then(() => undefined, (err: unknown) => err)
  expect(e).toBeInstanceOf(InputError)
  const err = e as InputError
  expect(err.details.join('\n')).toMatch(/may be valid, but this form is not supported/)
  expect(err.hint).toContain(`qemu-img convert -O raw ${file} base.raw`)
  return err
}
function u64be(n: bigint): Buffer {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(n)
  return b
}

describe('accepted forms', () => {
  it('qcow2 v3 and v2 with no references, with their virtual size', async () => {
    qemuImg('create', '-q', '-f', 'qcow2', 'v3.qcow2', '10M')
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', 'v2.qcow2', '12M')
    expect(await inspectDiskImage(path('v3.qcow2'), 'qcow2')).toEqual({format: 'qcow2', variant: 'qcow2 v3', virtualSize: 10 * MiB})
    expect(await inspectDiskImage(path('v2.qcow2'), 'qcow2')).toEqual({format: 'qcow2', variant: 'qcow2 v2', virtualSize: 12 * MiB})
  })

  it('qcow2 with zstd compression and extended L2 (known incompatible features)', async () => {
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compression_type=zstd,extended_l2=on', 'features.qcow2', '8M')
    expect(await inspectDiskImage(path('features.qcow2'), 'qcow2')).toMatchObject({variant: 'qcow2 v3', virtualSize: 8 * MiB})
  })

  it('vmdk monolithicSparse and streamOptimized', async () => {
    qemuImg('create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicSparse', 'sparse.vmdk', '10M')
    writeFileSync(path('ones.raw'), Buffer.alloc(4 * MiB, 1))
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', 'ones.raw', 'stream.vmdk')
    expect(await inspectDiskImage(path('sparse.vmdk'), 'vmdk')).toEqual({format: 'vmdk', variant: 'vmdk monolithicSparse', virtualSize: 10 * MiB})
    expect(await inspectDiskImage(path('stream.vmdk'), 'vmdk')).toEqual({format: 'vmdk', variant: 'vmdk streamOptimized', virtualSize: 4 * MiB})
  })

  it('raw, whatever its bytes, when they are no image header', async () => {
    expect(await inspectDiskImage(path('ones.raw'), 'raw')).toEqual({format: 'raw', variant: 'raw', virtualSize: 4 * MiB})
  })
})

describe('references to other files', () => {
  it('a qcow2 backing file, named', async () => {
    qemuImg('create', '-q', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', 'backed.qcow2')
    const e = await refusal(path('backed.qcow2'), 'qcow2')
    expect(e.message).toMatch(/: qcow2 backing file '\/etc\/passwd' \(header field backing_file_offset \d+, 11 bytes\); it refers to another file/)
  })

  it('a json: backing file name', async () => {
    qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'json:{"file.driver":"file","file.filename":"/etc/shadow"}', '-F', 'raw', 'json.qcow2', '1M')
    expect((await refusal(path('json.qcow2'), 'qcow2')).message).toContain(`qcow2 backing file 'json:{"file.driver":"file","file.filename":"/etc/shadow"}'`)
  })

  it('a qcow2 external data file, named (with and without data_file_raw)', async () => {
    qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${path('data.raw')}`, 'df.qcow2', '1M')
    qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${path('data2.raw')},data_file_raw=on`, 'dfr.qcow2', '1M')
    expect((await refusal(path('df.qcow2'), 'qcow2')).message).toContain(`qcow2 external data file '${path('data.raw')}' (header extension 0x44415441)`)
    expect((await refusal(path('dfr.qcow2'), 'qcow2')).message).toContain(`qcow2 external data file '${path('data2.raw')}'`)
  })

  it('the data-file feature bit without the name extension', async () => {
    // v3: incompatible_features at byte 72; the bit alone, the name left to the command line
    const e = await refusal(patched('v3.qcow2', 'bit.qcow2', 72, u64be(1n << 2n)), 'qcow2')
    expect(e.message).toContain('qcow2 external data file (incompatible feature bit 2')
  })

  it('unknown incompatible feature bits, corruption and encryption', async () => {
    expect((await refusal(patched('v3.qcow2', 'unknown.qcow2', 72, u64be(1n << 40n)), 'qcow2')).message).toContain('qcow2 unknown incompatible feature bits 0x10000000000')
    expect((await refusal(patched('v3.qcow2', 'corrupt.qcow2', 72, u64be(2n)), 'qcow2')).message).toContain('qcow2 marked corrupt')
    const aes = Buffer.alloc(4)
    aes.writeUInt32BE(1)
    expect((await refusal(patched('v3.qcow2', 'aes.qcow2', 32, aes), 'qcow2')).message).toContain('qcow2 encryption (header field crypt_method 1: AES)')
  })

  it('LUKS encryption, by crypt_method and by its header extension alone', async () => {
    const luks = Buffer.alloc(4)
    luks.writeUInt32BE(2)
    expect((await refusal(patched('v3.qcow2', 'luks.qcow2', 32, luks), 'qcow2')).message).toContain('qcow2 encryption (header field crypt_method 2: LUKS)')
    // the extensions from header_length on: the crypto header extension (offset and length of a LUKS header), then the end marker
    const ext = Buffer.alloc(8 + 16 + 8)
    ext.writeUInt32BE(0x0537be77, 0)
    ext.writeUInt32BE(16, 4)
    const headerLength = readFileSync(path('v3.qcow2')).readUInt32BE(100)
    expect((await refusal(patched('v3.qcow2', 'luks-ext.qcow2', headerLength, ext), 'qcow2')).message).toContain('qcow2 encryption (full disk encryption header extension 0x0537be77)')
  })

  it('qcow version 1', async () => {
    const v1 = Buffer.alloc(4)
    v1.writeUInt32BE(1)
    expect((await refusal(patched('v3.qcow2', 'v1.qcow2', 4, v1), 'qcow2')).message).toContain('qcow2 header version 1')
  })

  it('every vmdk form but the two single-file ones, naming the create type', async () => {
    for (const type of ['twoGbMaxExtentSparse', 'twoGbMaxExtentFlat', 'monolithicFlat']) {
      qemuImg('create', '-q', '-f', 'vmdk', '-o', `subformat=${type}`, `${type}.vmdk`, '4M')
      const e = await refusal(path(`${type}.vmdk`), 'vmdk')
      expect(e.message).toMatch(new RegExp(`it is a vmdk descriptor file \\(createType '${type}', extent '(RW|RDONLY) \\d+ \\w+ "${type}-`))
      expect(e.message).toMatch(/\); its extents are other files, which the converter would open and copy into the image$/)
    }
  })

  it('a hand-written descriptor with a FLAT extent anywhere on the host', async () => {
    writeFileSync(path('flat.vmdk'), '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "/dev/vda" 0\n')
    expect((await refusal(path('flat.vmdk'), 'vmdk')).message).toContain(`it is a vmdk descriptor file (createType 'monolithicFlat', extent 'RW 2048 FLAT "/dev/vda" 0')`)
  })

  it('a sparse vmdk whose embedded descriptor names another extent, a parent, or another create type', async () => {
    const sparse = readFileSync(path('sparse.vmdk'))
    const descriptorAt = Number(sparse.readBigUInt64LE(28)) * 512
    const room = Number(sparse.readBigUInt64LE(36)) * 512
    const descriptor = sparse.subarray(descriptorAt, descriptorAt + room).toString('latin1').replace(/\0+$/, '')
    const withDescriptor = (name: string, text: string) => {
      expect(text.length).toBeLessThanOrEqual(room)
      return patched('sparse.vmdk', name, descriptorAt, Buffer.from(text.padEnd(room, '\0'), 'latin1'))
    }
    const flat = withDescriptor('extent.vmdk', descriptor.replace(/RW \d+ SPARSE "[^"]*"/, 'RW 2048 SPARSE "sparse.vmdk"\nRW 2048 FLAT "/etc/passwd" 0'))
    expect((await refusal(flat, 'vmdk')).message).toContain(`vmdk extent 'RW 2048 FLAT "/etc/passwd" 0' in the embedded descriptor; it refers to another file`)
    const pathName = withDescriptor('pathname.vmdk', descriptor.replace(/RW (\d+) SPARSE "[^"]*"/, 'RW $1 SPARSE "../secret.vmdk"'))
    expect((await refusal(pathName, 'vmdk')).message).toMatch(/vmdk extent 'RW \d+ SPARSE "..\/secret.vmdk"'/)
    const parent = withDescriptor('parent.vmdk', descriptor.replace('parentCID=ffffffff', 'parentCID=12345678\nparentFileNameHint="/var/lib/parent.vmdk"'))
    expect((await refusal(parent, 'vmdk')).message).toMatch(/vmdk parent file '\/var\/lib\/parent.vmdk' \(descriptor field parentFileNameHint at byte \d+\)/)
    const type = withDescriptor('type.vmdk', descriptor.replace('monolithicSparse', 'vmfsSparse'))
    expect((await refusal(type, 'vmdk')).message).toContain(`vmdk createType 'vmfsSparse' in the embedded descriptor`)
  })
})

describe('the declared format must be what the bytes say', () => {
  it('a qcow2 (with a backing file) declared raw', async () => {
    expect((await refusal(path('backed.qcow2'), 'raw')).message).toBe(`the raw base ${path('backed.qcow2')}: its bytes are a qcow2 image, not raw; the declared format must be what the header says, so that no tool reads it as another format (a header that is not raw may name other files)`)
  })

  it('a vmdk descriptor declared raw or qcow2, a qcow2 declared vmdk, a raw declared qcow2', async () => {
    expect((await refusal(path('flat.vmdk'), 'raw')).message).toContain('its bytes are a vmdk descriptor file, not raw')
    expect((await refusal(path('v3.qcow2'), 'vmdk')).message).toContain('its bytes are a qcow2 image, not vmdk')
    const e = (await inspectDiskImage(path('ones.raw'), 'qcow2').catch((err: unknown) => err)) as InputError
    expect(e.message).toBe(`the qcow2 base ${path('ones.raw')}: its bytes are no qcow2 header ('\\x01\\x01\\x01\\x01\\x01\\x01\\x01\\x01' at byte 0); a damaged file, or base.format does not say what it is`)
    expect(e.hint).toBe("check that it is a qcow2 disk image and that the recipe's base.format says what it is; if it was downloaded, download it again")
  })

  it('other formats declared raw: vpc, vdi, qed, luks', async () => {
    for (const [fmt, name] of [['vpc', 'vpc (vhd)'], ['vdi', 'vdi'], ['qed', 'qed'], ['vhdx', 'vhdx']] as const) {
      qemuImg('create', '-q', '-f', fmt, `x.${fmt}`, '4M')
      expect((await refusal(path(`x.${fmt}`), 'raw')).message).toContain(`its bytes are a ${name} image`)
    }
  })

  it('a device or directory is no base file', async () => {
    const e = (await inspectDiskImage(dir, 'raw').catch((err: unknown) => err)) as InputError
    expect(e).toBeInstanceOf(InputError)
    expect(e.message).toBe(`the raw base ${dir}: it is not a regular file; a base is read from a file, not a device, pipe or directory`)
  })
})

/**
 * Issue #29: the vmdk as QEMU reads it. Each hostile file is first handed to the real qemu-img
 * (outside any sandbox, reading only files of this test's temp dir) to show QEMU follows what it
 * names, then to the inspector, which must refuse it.
 */
describe('a vmdk judged as QEMU reads it', () => {
  const PARENT_TEXT = 'PARENT-DISK-BYTES-'
  /** a sparse vmdk whose every byte comes from PARENT_TEXT, and its CID */
  function parentDisk(name: string): {file: string; cid: string} {
    writeFileSync(path(`${name}.raw`), Buffer.alloc(MiB, PARENT_TEXT))
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', `${name}.raw`, `${name}.vmdk`)
    return {file: path(`${name}.vmdk`), cid: /\nCID=([0-9a-f]+)/.exec(readFileSync(path(`${name}.vmdk`), 'latin1'))![1]}
  }
  /** an empty monolithicSparse vmdk of 1 MiB, with its embedded descriptor rewritten by `edit` and header fields set */
  function childDisk(name: string, edit: (descriptor: string) => string, header: Array<{at: number; value: bigint}> = []): string {
    qemuImg('create', '-q', '-f', 'vmdk', `${name}.orig.vmdk`, '1M')
    const b = readFileSync(path(`${name}.orig.vmdk`))
    const at = Number(b.readBigUInt64LE(28)) * 512
    const room = Number(b.readBigUInt64LE(36)) * 512
    const text = edit(b.subarray(at, at + room).toString('latin1').replace(/\0+$/, ''))
    expect(text.length).toBeLessThanOrEqual(room)
    Buffer.from(text.padEnd(room, '\0'), 'latin1').copy(b, at)
    for (const h of header) b.writeBigUInt64LE(h.value, h.at)
    writeFileSync(path(name), b)
    return path(name)
  }
  /** what qemu-img copies out of `file` into a raw disk */
  function qemuConverts(file: string): string {
    qemuImg('convert', '-f', 'vmdk', '-O', 'raw', file, `${file}.raw`)
    return readFileSync(`${file}.raw`, 'latin1')
  }

  it('a parentFileNameHint (and parentCID) on a # comment line: QEMU follows it, the inspector refuses it', async () => {
    const parent = parentDisk('parent')
    const child = childDisk('comment-parent.vmdk', (d) => d.replace('# Disk DescriptorFile\n', `# Disk DescriptorFile\n# parentCID=${parent.cid} parentFileNameHint="${parent.file}"\n`))
    expect(qemuConverts(child).startsWith(PARENT_TEXT)).toBe(true)
    const e = await refusal(child, 'vmdk')
    expect(e.message).toMatch(new RegExp(`: vmdk parent file '${parent.file}' \\(descriptor field parentFileNameHint at byte \\d+, on a # comment line, which QEMU reads all the same\\); it refers to another file`))
    expect(e.exitCode).toBe(2)
  })

  it('a commented parentCID alone is a delta disk of another vmdk', async () => {
    const child = childDisk('comment-cid.vmdk', (d) => d.replace('# Disk DescriptorFile\n', '# Disk DescriptorFile\n# parentCID=1234abcd\n'))
    expect((await refusal(child, 'vmdk')).message).toMatch(/: vmdk parentCID 1234abcd \(at byte \d+, on a # comment line, which QEMU reads all the same: a delta disk of another vmdk\)/)
  })

  it('a sparse header with capacity 0 is read by QEMU as a descriptor file, opening its extents: refused', async () => {
    const sibling = parentDisk('sibling')
    // QEMU takes the first createType, the commented one; a line reader sees monolithicSparse and one bare SPARSE extent
    const zero = childDisk('capacity0.vmdk', (d) => d.replace('# Disk DescriptorFile\n', '# Disk DescriptorFile\n# createType="twoGbMaxExtentSparse"\n').replace(/SPARSE "[^"]*"/, `SPARSE "${sibling.file.slice(dir.length + 1)}"`), [{at: 12, value: 0n}])
    expect(qemuConverts(zero).startsWith(PARENT_TEXT)).toBe(true)
    const e = await refusal(zero, 'vmdk')
    expect(e.message).toMatch(/: vmdk sparse header with capacity 0 and an embedded descriptor at sector 1; QEMU reads such a file as a descriptor file, whose extents are other files/)
  })

  it('a parentFileNameHint at byte 512 when the header puts the descriptor elsewhere: QEMU reads byte 512', async () => {
    const parent = parentDisk('parent512')
    // the clean descriptor moved to a new last sector range; sector 1 keeps a hint only QEMU looks at
    const moved = childDisk('moved.vmdk', (d) => d)
    const b = readFileSync(moved)
    const room = Number(b.readBigUInt64LE(36)) * 512
    const clean = b.subarray(512, 512 + room)
    const at = Math.ceil(b.length / 512)
    const out = Buffer.concat([b, Buffer.alloc(at * 512 - b.length), clean])
    out.writeBigUInt64LE(BigInt(at), 28)
    Buffer.from(`parentCID=${parent.cid}\nparentFileNameHint="${parent.file}"\n`.padEnd(room, '\0'), 'latin1').copy(out, 512)
    writeFileSync(path('moved2.vmdk'), out)
    expect(qemuConverts(path('moved2.vmdk')).startsWith(PARENT_TEXT)).toBe(true)
    expect((await refusal(path('moved2.vmdk'), 'vmdk')).message).toContain(`vmdk parent file '${parent.file}' (descriptor field parentFileNameHint at byte ${512 + `parentCID=${parent.cid}\n`.length})`)
  })

  it('a second, commented createType beside the accepted one', async () => {
    const two = childDisk('two-types.vmdk', (d) => d.replace('# Disk DescriptorFile\n', '# Disk DescriptorFile\n# createType="monolithicFlat"\n'))
    expect((await refusal(two, 'vmdk')).message).toMatch(/: vmdk createType 'monolithicFlat' at byte \d+, on a # comment line, which QEMU reads all the same, beside createType 'monolithicSparse'; QEMU takes the first createType/)
  })

  it('the footer of a streamOptimized file gives its capacity, as QEMU reads it', async () => {
    writeFileSync(path('ones2.raw'), Buffer.alloc(3 * MiB, 1))
    qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', 'ones2.raw', 'stream2.vmdk')
    const b = readFileSync(path('stream2.vmdk'))
    // a footer (marker of type 3, the real header, end-of-stream marker), and in the header the grain directory "at the end" and a capacity that differs from the footer's
    expect(b.length % 512).toBe(0)
    const marker = Buffer.alloc(512)
    marker.writeUInt32LE(3, 12)
    const withFooter = Buffer.concat([b, marker, b.subarray(0, 512), Buffer.alloc(512)])
    withFooter.writeBigUInt64LE(0xffffffffffffffffn, 56)
    withFooter.writeBigUInt64LE(1n, 12)
    writeFileSync(path('stream3.vmdk'), withFooter)
    expect(JSON.parse(execFileSync('qemu-img', ['info', '--output=json', path('stream3.vmdk')], {encoding: 'utf8'}))['virtual-size']).toBe(3 * MiB)
    expect(await inspectDiskImage(path('stream3.vmdk'), 'vmdk')).toMatchObject({virtualSize: 3 * MiB})
  })
})
