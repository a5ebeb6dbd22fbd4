import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'

import {afterAll, describe, expect, it} from 'vitest'

import {InputError} from '../errors.js'
import {downloadPath} from '../util/download.js'
import {imageBaseToRootfs} from './image-base.js'

/**
 * Issue #29: a --base-file is copied into the cache once and read only from there, and bytes that
 * are refused do not stay in the cache. The "user's file" is swapped for another disk the moment
 * the header check has passed (a progress line says so), as a racing writer would: what is read
 * must still be the bytes that were checked.
 */

const dir = mkdtempSync(join(tmpdir(), 'cvm-image-base-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))
let n = 0

/** a raw disk with no partition table: a 4 MiB ext4 whose /etc/secret holds `text` */
function ext4Disk(name: string, text: string): string {
  const tree = join(dir, `${name}-tree`)
  mkdirSync(join(tree, 'etc'), {recursive: true})
  writeFileSync(join(tree, 'etc', 'secret'), text)
  const disk = join(dir, name)
  writeFileSync(disk, '')
  truncateSync(disk, 4 * 1024 * 1024)
  execFileSync('mke2fs', ['-t', 'ext4', '-q', '-F', '-b', '1024', '-d', tree, disk], {stdio: 'pipe'})
  return disk
}
function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex')
}
/** a fresh cache and work dir, and io whose progress swaps `given` for `swap` once the header check has passed */
function setup(given?: string, swap?: string) {
  const root = join(dir, `run-${n++}`)
  const io = {cacheDir: join(root, 'cache'), work: join(root, 'work'), log: () => {}, progress: (line: string) => {
    if (given && swap && /no reference to another file/.test(line)) copyFileSync(swap, given)
  }}
  mkdirSync(io.work, {recursive: true})
  return {io, output: join(root, 'rootfs.tar')}
}
function secretIn(tar: string): string {
  return execFileSync('tar', ['-xOf', tar, 'etc/secret'], {encoding: 'utf8'})
}

describe('a --base-file is read from one copy in the cache', () => {
  it('pinned: the file changed after the check changes nothing; the copy is kept under the download name', async () => {
    const user = ext4Disk('pinned.raw', 'CHECKED BYTES\n')
    const other = ext4Disk('other.raw', 'SWAPPED BYTES\n')
    const sha = sha256(user)
    const {io, output} = setup(user, other)
    const url = 'https://example.invalid/disk.raw'
    await imageBaseToRootfs({url, format: 'raw', sha256: sha, file: user}, output, io)
    expect(sha256(user)).not.toBe(sha)
    expect(secretIn(output)).toBe('CHECKED BYTES\n')
    expect(sha256(downloadPath(io.cacheDir, sha, url))).toBe(sha)
  })

  it('unpinned: read from a copy in the work dir, removed afterwards', async () => {
    const user = ext4Disk('unpinned.raw', 'CHECKED BYTES\n')
    const {io, output} = setup(user, ext4Disk('other2.raw', 'SWAPPED BYTES\n'))
    const logged: string[] = []
    await imageBaseToRootfs({url: 'https://example.invalid/disk.raw', format: 'raw', file: user}, output, {...io, log: (l) => logged.push(l)})
    expect(secretIn(output)).toBe('CHECKED BYTES\n')
    expect(readdirSync(io.work)).not.toContain('base-file')
    expect(logged.some((l) => l.includes(`--base-file ${user}: sha256 `))).toBe(true)
  })
})

describe('refused bytes do not stay in the cache', () => {
  /** a monolithicSparse vmdk with a commented parentFileNameHint, which the inspector refuses */
  function hostileVmdk(name: string): string {
    execFileSync('qemu-img', ['create', '-q', '-f', 'vmdk', join(dir, name), '1M'])
    const b = readFileSync(join(dir, name))
    const at = Number(b.readBigUInt64LE(28)) * 512
    const text = b.subarray(at, at + 512).toString('latin1').replace('# Disk DescriptorFile\n', '# Disk DescriptorFile\n# parentFileNameHint="/etc/passwd"\n')
    Buffer.from(text, 'latin1').copy(b, at)
    writeFileSync(join(dir, name), b)
    return join(dir, name)
  }

  it('a pinned download the inspector refuses is removed from downloads/', async () => {
    const vmdk = hostileVmdk('hostile.vmdk')
    const sha = sha256(vmdk)
    const url = pathToFileURL(vmdk).href
    const {io, output} = setup()
    const e = await imageBaseToRootfs({url, format: 'vmdk', sha256: sha}, output, io).then(() => undefined, (err: unknown) => err)
    expect(e).toBeInstanceOf(InputError)
    // named by its URL: the cache's copy is gone
    expect((e as InputError).message).toMatch(new RegExp(`^the vmdk base ${url}: vmdk parent file '/etc/passwd'`))
    expect(existsSync(downloadPath(io.cacheDir, sha, url))).toBe(false)
    expect(readdirSync(join(io.cacheDir, 'downloads'))).toEqual([])
    expect(existsSync(output)).toBe(false)
  })

  it('a pinned --base-file copy the inspector refuses is removed too', async () => {
    const vmdk = hostileVmdk('hostile2.vmdk')
    const sha = sha256(vmdk)
    const {io, output} = setup()
    const e = await imageBaseToRootfs({url: 'https://example.invalid/x.vmdk', format: 'vmdk', sha256: sha, file: vmdk}, output, io).then(() => undefined, (err: unknown) => err)
    expect(e).toBeInstanceOf(InputError)
    // named as the user gave it, not as the cache's copy
    expect((e as InputError).message.startsWith(`the vmdk base ${vmdk}: `)).toBe(true)
    expect(readdirSync(join(io.cacheDir, 'downloads'))).toEqual([])
    expect(existsSync(vmdk)).toBe(true)
  })
})
