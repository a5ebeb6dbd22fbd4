import {execFileSync} from 'node:child_process'
import {createReadStream, createWriteStream, existsSync, readdirSync, readFileSync} from 'node:fs'
import {mkdtemp, rm, truncate, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'

import tar, {type Header} from 'tar-stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {InputError, StageError} from '../src/errors.js'
import {transformRootfs, type Addition} from '../src/rootfs/transform.js'
import {xattrString} from '../src/rootfs/tar-pax.js'
import {canonicalEntryName, globToRegExp, symlinkDestination} from '../src/rootfs/entry-path.js'

/**
 * The rootfs transform against a corpus of hostile tarballs the test writes itself, plus the
 * properties a distro root needs kept (owners, modes, devices, hardlinks, long names, xattrs).
 */

type Spec = Partial<Header> & {name: string; data?: Buffer | string}

const EPOCH = 1_700_000_000
/** a real security.capability value (cap_net_raw+ep, VFS_CAP_REVISION_2) plus bytes UTF-8 cannot carry */
const CAPABILITY = Buffer.from('0100000200200000000000000000000000000000', 'hex')
const AWKWARD = Buffer.from([0x00, 0x80, 0xff, 0xc3, 0x28, 0x0a, 0x3d, 0x20])

let dir: string

beforeAll(async () => {
  // the corpus lives two levels down, so an entry that climbed out would land in `dir` and be seen
  dir = await mkdtemp(join(tmpdir(), 'cvm-transform-'))
})
afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

async function makeTar(file: string, entries: Spec[]): Promise<void> {
  const pack = tar.pack()
  const done = pipeline(pack as unknown as NodeJS.ReadableStream, createWriteStream(file))
  for (const {data, ...h} of entries) {
    const body = data === undefined ? undefined : Buffer.from(data)
    await new Promise<void>((resolve, reject) => {
      const header = {mode: 0o644, uid: 0, gid: 0, mtime: new Date(EPOCH * 1000), ...h}
      if (body) pack.entry({...header, size: body.length}, body, (e) => (e ? reject(e) : resolve()))
      else pack.entry(header, (e) => (e ? reject(e) : resolve())).end(undefined)
    })
  }
  pack.finalize()
  await done
}

async function readTar(file: string): Promise<Array<Header & {data: Buffer}>> {
  const extract = tar.extract()
  const reading = pipeline(createReadStream(file), extract as unknown as NodeJS.WritableStream)
  const out: Array<Header & {data: Buffer}> = []
  for await (const entry of extract) {
    const chunks: Buffer[] = []
    for await (const c of entry) chunks.push(c as Buffer)
    out.push({...entry.header, data: Buffer.concat(chunks)})
  }
  await reading
  return out
}

let n = 0
async function transform(entries: Spec[], opts: {remove?: string[]; additions?: Addition[]; allowAbsoluteSymlinks?: boolean} = {}) {
  const work = join(dir, `case-${++n}`, 'work')
  execFileSync('mkdir', ['-p', work])
  const input = join(work, 'in.tar')
  const output = join(work, 'out.tar')
  await makeTar(input, entries)
  const result = await transformRootfs({
    input,
    output,
    remove: opts.remove ?? [],
    additions: opts.additions ?? [],
    allowAbsoluteSymlinks: opts.allowAbsoluteSymlinks ?? true,
    sourceDateEpoch: EPOCH,
  })
  return {result, output, work}
}

async function refusal(entries: Spec[], opts: Parameters<typeof transform>[1] = {}): Promise<InputError> {
  const before = readdirSync(dir).filter((f) => !f.startsWith('case-'))
  const e = await transform(entries, opts).then(
    () => undefined,
    (err: unknown) => err,
  )
  expect(e, 'the transform should refuse this archive').toBeInstanceOf(InputError)
  // nothing escaped into the directory above the work areas
  expect(readdirSync(dir).filter((f) => !f.startsWith('case-'))).toEqual(before)
  return e as InputError
}

const root: Spec = {name: './', type: 'directory', mode: 0o755}
const etc: Spec = {name: './etc/', type: 'directory', mode: 0o755}

describe('entry names', () => {
  it('canonicalizes and refuses names outside the root', () => {
    expect(canonicalEntryName('./usr//bin/./x/')).toEqual({name: 'usr/bin/x'})
    expect(canonicalEntryName('./')).toEqual({name: ''})
    expect(canonicalEntryName('/etc/passwd')).toHaveProperty('problem')
    expect(canonicalEntryName('a/../../b')).toHaveProperty('problem')
    expect(symlinkDestination('usr/lib/x', '../../bin/sh')).toBe('bin/sh')
    expect(symlinkDestination('etc/x', '../../../../etc/shadow')).toBeUndefined()
    expect(symlinkDestination('etc/x', '/../../etc/shadow')).toBe('etc/shadow')
  })

  it('matches removal globs within and across components', () => {
    expect(globToRegExp('boot/vmlinuz-*').test('boot/vmlinuz-6.1.0-1-amd64')).toBe(true)
    expect(globToRegExp('boot/vmlinuz-*').test('boot/x/vmlinuz-1')).toBe(false)
    expect(globToRegExp('usr/lib/modules/**').test('usr/lib/modules/6.1/kernel/a.ko')).toBe(true)
    expect(globToRegExp('/etc/ssh/ssh_host_*').test('etc/ssh/ssh_host_rsa_key')).toBe(true)
  })
})

describe('hostile tarballs are refused with the entry named', () => {
  it('path traversal with ..', async () => {
    const e = await refusal([root, {name: '../evil', data: 'x'}])
    expect(e.message).toContain('"../evil"')
    expect(e.message).toMatch(/climbs out/)
  })

  it('traversal hidden in the middle of a name', async () => {
    const e = await refusal([root, etc, {name: 'etc/../../evil', data: 'x'}])
    expect(e.message).toContain('"etc/../../evil"')
  })

  it('absolute names', async () => {
    const e = await refusal([root, {name: '/etc/cron.d/evil', data: 'x'}])
    expect(e.message).toContain('"/etc/cron.d/evil"')
    expect(e.message).toMatch(/absolute/)
  })

  it('a relative symlink that climbs out of the root', async () => {
    const e = await refusal([root, etc, {name: 'etc/escape', type: 'symlink', linkname: '../../../../tmp'}])
    expect(e.message).toContain('"etc/escape"')
    expect(e.message).toMatch(/climbs out/)
  })

  it('an absolute symlink when the recipe does not allow them', async () => {
    const e = await refusal([root, {name: 'sh', type: 'symlink', linkname: '/bin/dash'}], {allowAbsoluteSymlinks: false})
    expect(e.message).toContain('"sh"')
    expect(e.hint).toMatch(/allow_absolute_symlinks/)
  })

  it('an entry written through a symlink (the classic link-then-file attack)', async () => {
    const e = await refusal([root, {name: 'etc', type: 'symlink', linkname: '/tmp'}, {name: 'etc/cron.d', data: 'x'}])
    expect(e.message).toContain('"etc/cron.d"')
    expect(e.message).toMatch(/below the symlink "etc"/)
  })

  it('a hardlink to nothing before it', async () => {
    const e = await refusal([root, {name: 'bin-sh', type: 'link', linkname: 'bin/dash'}])
    expect(e.message).toContain('"bin-sh"')
    expect(e.message).toMatch(/not an earlier entry/)
  })

  it('a hardlink that escapes', async () => {
    const e = await refusal([root, {name: 'shadow', type: 'link', linkname: '../../etc/shadow'}])
    expect(e.message).toContain('"shadow"')
  })

  it('a hardlink to an absolute path', async () => {
    const e = await refusal([root, {name: 'shadow', type: 'link', linkname: '/etc/shadow'}])
    expect(e.message).toContain('"shadow"')
  })

  it('a hardlink to a file the recipe removes', async () => {
    const e = await refusal([root, {name: 'boot/', type: 'directory'}, {name: 'boot/vmlinuz-1', data: 'k'}, {name: 'boot/copy', type: 'link', linkname: 'boot/vmlinuz-1'}], {remove: ['boot/vmlinuz-*']})
    expect(e.message).toContain('"boot/copy"')
    expect(e.hint).toMatch(/recipe.image.remove/)
  })

  it('a component longer than ext4 allows', async () => {
    const long = 'x'.repeat(256)
    const e = await refusal([root, {name: long, data: 'x'}])
    expect(e.message).toContain(long)
    expect(e.message).toMatch(/255 bytes/)
  })

  it('a file under a regular file', async () => {
    const e = await refusal([root, {name: 'f', data: 'x'}, {name: 'f/g', data: 'y'}])
    expect(e.message).toContain('"f/g"')
  })

  it('a root that is not a directory', async () => {
    const e = await refusal([{name: './', type: 'symlink', linkname: '/'}])
    expect(e.message).toContain('"./"')
  })

  it('the same file twice', async () => {
    const e = await refusal([root, {name: 'f', data: 'x'}, {name: './f', data: 'y'}])
    expect(e.message).toContain('"./f"')
  })

  it('a truncated archive', async () => {
    const work = join(dir, 'truncated')
    execFileSync('mkdir', ['-p', work])
    const input = join(work, 'in.tar')
    await makeTar(input, [root, {name: 'first', data: 'a'}, {name: 'big', data: Buffer.alloc(100_000, 7)}])
    await truncate(input, 512 * 3 + 512 + 20_000)
    const e = await transformRootfs({input, output: join(work, 'out.tar'), remove: [], additions: [], allowAbsoluteSymlinks: true, sourceDateEpoch: EPOCH}).then(
      () => undefined,
      (err: unknown) => err as InputError,
    )
    expect(e).toBeInstanceOf(InputError)
    expect(e!.message).toContain('"big"')
    expect(e!.hint).toMatch(/damaged or truncated/)
  })

  it('an xattr with a name that is not an xattr namespace', async () => {
    const e = await refusal([root, {name: 'f', data: 'x', pax: {'SCHILY.xattr.bogus': 'v'}}])
    expect(e.message).toContain('"f"')
  })

  it('a GNU sparse file (the transform cannot carry its map)', async () => {
    const e = await refusal([root, {name: 'sparse', data: 'x', pax: {'GNU.sparse.major': '1', 'GNU.sparse.minor': '0'}}])
    expect(e.message).toContain('"sparse"')
  })
})

describe('what a distro root needs is kept exactly', () => {
  it('owners, modes, device nodes, fifos, hardlinks, symlinks, long names, clamped times', async () => {
    const longDir = `usr/share/${'d'.repeat(120)}`
    const longName = `${longDir}/${'f'.repeat(200)}`
    const {output} = await transform([
      root,
      {name: 'dev/', type: 'directory'},
      {name: 'dev/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3},
      {name: 'dev/sda', type: 'block-device', mode: 0o660, gid: 6, devmajor: 8, devminor: 0},
      {name: 'run-fifo', type: 'fifo', mode: 0o600},
      {name: 'usr/', type: 'directory'},
      {name: 'usr/bin/', type: 'directory'},
      {name: 'usr/bin/sudo', mode: 0o4755, data: 'sudo'},
      {name: 'usr/bin/perl', mode: 0o755, data: 'perl'},
      {name: 'usr/bin/perl5.36.0', type: 'link', linkname: 'usr/bin/perl'},
      {name: 'etc/', type: 'directory'},
      {name: 'etc/shadow', mode: 0o640, uid: 0, gid: 42, data: 'root:*:'},
      {name: 'home/', type: 'directory'},
      {name: 'home/u/', type: 'directory', mode: 0o700, uid: 1000, gid: 1000, mtime: new Date((EPOCH + 99999) * 1000)},
      {name: 'bin', type: 'symlink', linkname: 'usr/bin'},
      {name: 'etc/resolv.conf', type: 'symlink', linkname: '../run/systemd/resolve/stub-resolv.conf'},
      {name: 'etc/localtime', type: 'symlink', linkname: '/usr/share/zoneinfo/Etc/UTC'},
      {name: 'usr/share/', type: 'directory'},
      {name: `${longDir}/`, type: 'directory'},
      {name: longName, data: 'long', uid: 5, gid: 7},
      {name: 'usr/bin/ping', mode: 0o755, data: 'ping', pax: {'SCHILY.xattr.security.capability': xattrString(CAPABILITY), 'SCHILY.xattr.user.awkward': xattrString(AWKWARD)}},
    ])
    const got = new Map((await readTar(output)).map((e) => [e.name.replace(/\/$/, ''), e]))
    expect(got.get('dev/null')).toMatchObject({type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3})
    expect(got.get('dev/sda')).toMatchObject({type: 'block-device', mode: 0o660, gid: 6, devmajor: 8, devminor: 0})
    expect(got.get('run-fifo')).toMatchObject({type: 'fifo', mode: 0o600})
    expect(got.get('usr/bin/sudo')).toMatchObject({mode: 0o4755, uid: 0})
    expect(got.get('usr/bin/perl5.36.0')).toMatchObject({type: 'link', linkname: 'usr/bin/perl'})
    expect(got.get('etc/shadow')).toMatchObject({mode: 0o640, gid: 42})
    expect(got.get('home/u')).toMatchObject({type: 'directory', mode: 0o700, uid: 1000, gid: 1000})
    expect(got.get('home/u')!.mtime.getTime()).toBe(EPOCH * 1000)
    expect(got.get('bin')).toMatchObject({type: 'symlink', linkname: 'usr/bin'})
    expect(got.get('etc/localtime')).toMatchObject({type: 'symlink', linkname: '/usr/share/zoneinfo/Etc/UTC'})
    expect(got.get(longName)).toMatchObject({uid: 5, gid: 7})
    expect(got.get(longName)!.data.toString()).toBe('long')
    // the bytes in the archive itself, independent of our own PAX decoder
    const raw = readFileSync(output)
    expect(raw.includes(Buffer.concat([Buffer.from(' SCHILY.xattr.security.capability='), CAPABILITY, Buffer.from('\n')]))).toBe(true)
    expect(raw.includes(Buffer.concat([Buffer.from(' SCHILY.xattr.user.awkward='), AWKWARD, Buffer.from('\n')]))).toBe(true)
  })

  it('GNU tar reads the output the same way: names, owners, devices, binary xattrs', async () => {
    const {output, work} = await transform([
      root,
      {name: 'dev/', type: 'directory'},
      {name: 'dev/console', type: 'character-device', mode: 0o600, devmajor: 5, devminor: 1},
      {name: `${'n'.repeat(150)}`, data: 'x', uid: 33, gid: 44},
      {name: 'ping', mode: 0o755, data: 'p', pax: {'SCHILY.xattr.user.awkward': xattrString(AWKWARD)}},
    ])
    const listing = execFileSync('tar', ['--numeric-owner', '-tvf', output]).toString()
    expect(listing).toMatch(/crw------- 0\/0\s+5,1 .* dev\/console/)
    expect(listing).toMatch(new RegExp(`33/44 .* ${'n'.repeat(150)}`))
    if (process.getuid?.() === 0 || existsSync('/usr/bin/getfattr')) {
      // user.* xattrs can be set by a file's owner: extract with GNU tar and read the attribute back
      const x = join(work, 'x')
      execFileSync('mkdir', ['-p', x])
      execFileSync('tar', ['--xattrs', '--xattrs-include=user.*', '-xf', output, '-C', x, 'ping'])
      const dump = execFileSync('getfattr', ['--absolute-names', '-n', 'user.awkward', '-e', 'hex', join(x, 'ping')]).toString()
      expect(Buffer.from(/user\.awkward=0x([0-9a-f]+)/.exec(dump)![1], 'hex')).toEqual(AWKWARD)
    }
  })

  it('removes what the recipe replaces, places additions through lib -> usr/lib, adds missing parents', async () => {
    const {result, output} = await transform(
      [
        root,
        {name: 'lib', type: 'symlink', linkname: 'usr/lib'},
        {name: 'usr/', type: 'directory'},
        {name: 'usr/lib/', type: 'directory'},
        {name: 'usr/lib/modules/', type: 'directory'},
        {name: 'usr/lib/modules/6.1.0-9-amd64/', type: 'directory'},
        {name: 'usr/lib/modules/6.1.0-9-amd64/kernel.ko', data: 'old'},
        {name: 'boot/', type: 'directory'},
        {name: 'boot/vmlinuz-6.1.0-9-amd64', data: 'old kernel'},
        {name: 'vmlinuz', type: 'symlink', linkname: 'boot/vmlinuz-6.1.0-9-amd64'},
        {name: 'etc/', type: 'directory'},
        {name: 'etc/hostname', data: 'debian\n'},
      ],
      {
        remove: ['boot/vmlinuz-*', 'vmlinuz', 'usr/lib/modules/*'],
        additions: [
          {kind: 'directory', name: 'lib', mode: 0o755},
          {kind: 'directory', name: 'lib/modules', mode: 0o755},
          {kind: 'directory', name: 'lib/modules/6.1.192-cvm', mode: 0o755},
          {kind: 'file', name: 'lib/modules/6.1.192-cvm/modules.dep', mode: 0o644, content: Buffer.from('')},
          {kind: 'file', name: 'etc/hostname', mode: 0o644, content: Buffer.from('cvm\n')},
          {kind: 'file', name: 'etc/cvm-image/build.json', mode: 0o644, content: Buffer.from('{}')},
        ],
      },
    )
    const names = (await readTar(output)).map((e) => e.name.replace(/\/$/, ''))
    expect(names).not.toContain('boot/vmlinuz-6.1.0-9-amd64')
    expect(names).not.toContain('vmlinuz')
    expect(names).not.toContain('usr/lib/modules/6.1.0-9-amd64/kernel.ko')
    expect(names, names.join(' ')).toContain('usr/lib/modules/6.1.192-cvm/modules.dep')
    expect(names).not.toContain('lib/modules/6.1.192-cvm/modules.dep')
    // the base's lib -> usr/lib link stays a link: a directory addition never replaces it
    expect(names.filter((x) => x === 'lib')).toHaveLength(1)
    expect((await readTar(output)).find((e) => e.name === 'lib')).toMatchObject({type: 'symlink'})
    expect(names.filter((x) => x === 'etc/hostname')).toHaveLength(1)
    expect(names.indexOf('etc/cvm-image')).toBeLessThan(names.indexOf('etc/cvm-image/build.json'))
    expect(result.removed).toBe(5)
    expect(result.placed['lib/modules/6.1.192-cvm/modules.dep']).toBe('usr/lib/modules/6.1.192-cvm/modules.dep')
  })

  it('a hardlink to a file the image replaces keeps the base\'s content, as the other names of a file dpkg replaces do', async () => {
    const hostname = {kind: 'file', name: 'etc/hostname', mode: 0o644, content: Buffer.from('cvm\n')} as const
    const {result, output} = await transform(
      [
        root,
        etc,
        {name: 'etc/hostname', data: 'debian\n', mode: 0o640, uid: 0, gid: 4, pax: {'SCHILY.xattr.user.awkward': xattrString(AWKWARD)}},
        {name: 'etc/hard', type: 'link', linkname: 'etc/hostname'},
        {name: './etc/hard2', type: 'link', linkname: './etc/hostname'},
      ],
      {additions: [hostname]},
    )
    const got = new Map((await readTar(output)).map((e) => [e.name, e]))
    expect(got.get('etc/hostname')).toMatchObject({type: 'file', data: Buffer.from('cvm\n')})
    // the first link takes the old file's place (content, mode, owner, xattrs); the others stay its links
    expect(got.get('etc/hard')).toMatchObject({type: 'file', mode: 0o640, gid: 4, data: Buffer.from('debian\n')})
    expect(got.get('etc/hard')!.pax).toMatchObject({'SCHILY.xattr.user.awkward': xattrString(AWKWARD)})
    expect(result.xattrs.map((x) => x.name)).toEqual(['etc/hard'])
    expect(got.get('etc/hard2')).toMatchObject({type: 'link', linkname: 'etc/hard'})
    expect(result.removed).toBe(1)

    // the same file in the other order (the link is the name replaced): the same outcome
    const swapped = await transform([root, etc, {name: 'etc/hard', data: 'debian\n'}, {name: 'etc/hostname', type: 'link', linkname: 'etc/hard'}], {additions: [hostname]})
    const names = new Map((await readTar(swapped.output)).map((e) => [e.name, e]))
    expect(names.get('etc/hostname')).toMatchObject({type: 'file', data: Buffer.from('cvm\n')})
    expect(names.get('etc/hard')).toMatchObject({type: 'file', data: Buffer.from('debian\n')})
  })

  it('a hardlink to a link the image replaces points at the file both named', async () => {
    const {output} = await transform(
      [root, etc, {name: 'etc/a', data: 'debian\n'}, {name: 'etc/hostname', type: 'link', linkname: 'etc/a'}, {name: 'etc/b', type: 'link', linkname: 'etc/hostname'}],
      {additions: [{kind: 'file', name: 'etc/hostname', mode: 0o644, content: Buffer.from('cvm\n')}]},
    )
    const got = new Map((await readTar(output)).map((e) => [e.name, e]))
    expect(got.get('etc/b')).toMatchObject({type: 'link', linkname: 'etc/a'})
    expect(got.get('etc/hostname')).toMatchObject({type: 'file', data: Buffer.from('cvm\n')})
  })

  it('a full disk ends the transform with a StageError instead of a hang or a crash, however the write error falls', async () => {
    const work = join(dir, 'full')
    execFileSync('mkdir', ['-p', work])
    const input = join(work, 'in.tar')
    await makeTar(input, [root, ...Array.from({length: 50}, (_, i) => ({name: `f${i}`, data: Buffer.alloc(64 * 1024, i)}))])
    // where the error falls varies run to run: in about 3 runs in 100 it destroyed the entry being
    // written, whose sink had no error listener, and the process had an uncaught ENOSPC (CI, stop 32)
    const uncaught: unknown[] = []
    const onUncaught = (e: unknown) => uncaught.push(e)
    process.on('uncaughtException', onUncaught)
    try {
      for (let run = 0; run < 300; run++) {
        const e = await transformRootfs({input, output: '/dev/full', remove: [], additions: [], allowAbsoluteSymlinks: true, sourceDateEpoch: EPOCH}).catch((err: unknown) => err)
        expect(e).toBeInstanceOf(StageError)
        expect((e as StageError).message).toMatch(/cannot write \/dev\/full/)
        await new Promise((r) => setTimeout(r, run % 4))
      }
      await new Promise((r) => setTimeout(r, 100))
    } finally {
      process.off('uncaughtException', onUncaught)
    }
    expect(uncaught).toEqual([])
  })

  it('is deterministic: the same input gives the same bytes', async () => {
    const entries: Spec[] = [root, {name: 'a', data: 'x', mtime: new Date(2_000_000_000_000)}, {name: 'b', type: 'symlink', linkname: 'a'}]
    const one = await transform(entries, {additions: [{kind: 'file', name: 'c', mode: 0o644, content: Buffer.from('c')}]})
    const two = await transform(entries, {additions: [{kind: 'file', name: 'c', mode: 0o644, content: Buffer.from('c')}]})
    expect(readFileSync(one.output).equals(readFileSync(two.output))).toBe(true)
    expect((await stat(one.output)).size).toBeGreaterThan(0)
  })
})
