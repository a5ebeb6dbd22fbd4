import {createReadStream, createWriteStream} from 'node:fs'
import {mkdtemp, rm} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import type {Readable} from 'node:stream'

import tar, {type Header as TarHeader, type Pack} from 'tar-stream'

type Header = Partial<TarHeader> & {name: string}

import {InputError, StageError} from '../errors.js'
import {canonicalEntryName, parentsOf, RemovalGlobs, symlinkDestination} from './entry-path.js'
import {XATTR_PREFIX, installBinaryPax, xattrValue} from './tar-pax.js'

installBinaryPax()

/**
 * The rootfs transform: reads a base rootfs tarball once and writes the image's rootfs tarball,
 * entry by entry with backpressure, so memory stays bounded by the number of entries (a set of
 * names), never by their size. It drops what the recipe replaces, refuses anything that would
 * land outside the root, clamps times, and appends the CVM files (kernel modules, guest config).
 *
 * A file an addition replaces may have other names (hardlinks) in the base. Those keep the base's
 * content, as they would after dpkg or `install` put a new file at the one name: the first of them
 * becomes the file (content, mode, owner, xattrs), the others its links.
 */

/** A file, directory or symlink to add, at a canonical name. Owned by root. */
export type Addition =
  | {kind: 'file'; name: string; mode: number; content: Buffer}
  | {kind: 'host-file'; name: string; mode: number; size: number; source: string}
  | {kind: 'directory'; name: string; mode: number}
  | {kind: 'symlink'; name: string; target: string}

export interface TransformOptions {
  /** the base rootfs tarball (uncompressed) */
  input: string
  /** the new rootfs tarball */
  output: string
  /** recipe.image.remove */
  remove: readonly string[]
  additions: readonly Addition[]
  /** recipe.image.allow_absolute_symlinks */
  allowAbsoluteSymlinks: boolean
  /** no time in the output is later than this (seconds) */
  sourceDateEpoch: number
  /** canonical names of small regular files whose content the caller wants (e.g. usr/lib/os-release) */
  capture?: readonly string[]
}

export interface XattrRecord {
  /** canonical name of the entry */
  name: string
  /** e.g. security.capability */
  key: string
  value: Buffer
}

export interface TransformResult {
  /** entries in the output, the root included */
  entries: number
  removed: number
  added: number
  /** extended attributes carried by the output (to apply to the filesystem made from it) */
  xattrs: XattrRecord[]
  captured: Record<string, Buffer>
  /** where each addition landed after following the base's directory symlinks (e.g. lib -> usr/lib) */
  placed: Record<string, string>
}

const CAPTURE_LIMIT = 1 << 20
/** pax records that only describe the source machine; dropped so the output depends on content alone */
const DROPPED_PAX = new Set(['atime', 'ctime', 'mtime', 'comment', 'charset', 'hdrcharset', 'SCHILY.dev', 'SCHILY.ino', 'SCHILY.nlink', 'SCHILY.fflags'])
const KEPT_PAX = new Set(['path', 'linkpath', 'size', 'uid', 'gid', 'uname', 'gname'])
const SYMLINK_HOPS = 40

type EntryKind = 'directory' | 'file' | 'symlink' | 'other'

/**
 * An entry an addition replaced, kept aside in case a later hardlink names it: a file or node (its
 * header, and its content in a spool file), or a hardlink to a kept entry.
 */
type Replaced =
  | {kind: 'node'; raw: string; header: TarHeader; spool?: string; heldBy?: string}
  | {kind: 'alias'; target: string}

function refuse(name: string, why: string, hint?: string): InputError {
  return new InputError(`rootfs entry "${name}" ${why}`, {
    hint: hint ?? 'the base tarball is not a plain root filesystem; check where it came from, or list the entry in recipe.image.remove',
  })
}

/** Runs the transform; throws an InputError naming the first entry it refuses. */
export async function transformRootfs(opts: TransformOptions): Promise<TransformResult> {
  // replaced files' content, kept beside the output until the end, whatever the end
  const spool: Spool = {}
  try {
    return await transform(opts, spool)
  } finally {
    if (spool.dir) await rm(spool.dir, {recursive: true, force: true})
  }
}

interface Spool {
  dir?: string
}

/**
 * What becomes of one base entry: the policy half of the transform (EntryPolicy decides, with every
 * refusal and all it remembers of earlier entries); transform() below does the streams.
 * - drop: not in the output (recipe.image.remove, or a name an addition replaces)
 * - set-aside: a file or node an addition replaces: its content is kept in a spool file, for a
 *   later hardlink of it to take (recordSetAside with the spool path)
 * - heir: a hardlink that takes a replaced file's place: write that file's header and spooled content
 * - write: the entry as it is (header cleaned, time clamped), its body from the archive
 */
type EntryPlan =
  | {do: 'drop'}
  | {do: 'set-aside'; name: string; raw: string; header: TarHeader}
  | {do: 'heir'; header: Header; spool?: string}
  | {do: 'write'; name: string; header: Header; capture: boolean}

class EntryPolicy {
  private readonly removal: RemovalGlobs
  private readonly clamp: (d: Date | undefined) => Date
  /** files and links the CVM brings replace the base's; directories merge with the base's */
  private readonly additionNames: Set<string>
  private readonly capture: Set<string>
  /** kind of every name kept so far: hardlinks must point back at one, additions must not collide */
  readonly kept = new Map<string, EntryKind>()
  /** symlinks kept so far: an entry below one would be written through it */
  readonly symlinks = new Map<string, string>()
  /** names recipe.image.remove dropped */
  private readonly removedNames = new Set<string>()
  /** names an addition replaced, by name */
  private readonly replaced = new Map<string, Replaced>()
  readonly xattrs: XattrRecord[] = []
  removed = 0

  constructor(private readonly opts: TransformOptions) {
    this.removal = new RemovalGlobs(opts.remove)
    const epoch = opts.sourceDateEpoch
    this.clamp = (d) => new Date(Math.min(d ? Math.floor(d.getTime() / 1000) : epoch, epoch) * 1000)
    this.additionNames = new Set(opts.additions.filter((a) => a.kind !== 'directory').map((a) => a.name))
    this.capture = new Set(opts.capture ?? [])
  }

  /** Decides one entry, in archive order; throws an InputError naming it when it is refused. */
  plan(h: TarHeader): EntryPlan {
    const raw = h.name
    if (raw.includes('\uFFFD')) throw refuse(raw, 'has a name that is not valid UTF-8')
    const canon = canonicalEntryName(raw)
    if ('problem' in canon) throw refuse(raw, canon.problem)
    const name = canon.name
    const kind = entryKind(h.type)
    if (kind === undefined) throw refuse(raw, `has tar type "${h.type}", which a root filesystem cannot hold`)
    if (name === '' && kind !== 'directory') throw refuse(raw, 'names the root itself but is not a directory')

    const throughLink = parentsOf(name).find((p) => this.symlinks.has(p))
    if (throughLink) throw refuse(raw, `lies below the symlink "${throughLink}": extracting it would write through the link`)
    const belowFile = parentsOf(name).find((p) => this.kept.has(p) && this.kept.get(p) !== 'directory')
    if (belowFile) throw refuse(raw, `lies below "${belowFile}", which is not a directory`)

    if (this.removal.match(name) !== undefined) {
      this.removed++
      this.removedNames.add(name)
      return {do: 'drop'}
    }
    if (this.additionNames.has(name) && h.type !== 'directory') {
      this.removed++
      if (h.type === 'link') {
        const target = canonicalEntryName(h.linkname ?? '')
        if (!('problem' in target) && this.kept.has(target.name)) this.replaced.set(name, {kind: 'alias', target: target.name})
        return {do: 'drop'}
      }
      if (kind === 'file' || kind === 'other') return {do: 'set-aside', name, raw, header: h}
      return {do: 'drop'}
    }
    if (name && this.kept.get(name) !== undefined && !(h.type === 'directory' && this.kept.get(name) === 'directory')) {
      throw refuse(raw, 'appears twice in the archive', 'a root filesystem has one entry per name; rebuild the base tarball')
    }

    // a hardlink to a file an addition replaced: the first one takes the file's place, with the base's content
    const heir = h.type === 'link' ? this.replacedTarget(h.linkname) : undefined
    if (heir?.kind === 'node' && heir.heldBy === undefined) {
      heir.heldBy = name
      const pax = checkPax(heir.raw, (heir.header.pax ?? {}) as Record<string, string>)
      const header = outputHeader(name, heir.header, pax, this.clamp)
      this.addXattrs(header, name, pax)
      this.kept.set(name, entryKind(heir.header.type)!)
      return {do: 'heir', header, spool: heir.spool}
    }

    const pax = checkPax(raw, (h.pax ?? {}) as Record<string, string>)
    const header = outputHeader(name, h, pax, this.clamp)
    if (h.type === 'symlink') {
      const target = h.linkname ?? ''
      if (!target) throw refuse(raw, 'is a symlink with an empty target')
      if (target.startsWith('/') && !this.opts.allowAbsoluteSymlinks) {
        throw refuse(raw, `is a symlink to the absolute path "${target}"`, 'set recipe.image.allow_absolute_symlinks: true if the distro ships such links (they resolve inside the image)')
      }
      if (symlinkDestination(name, target) === undefined) throw refuse(raw, `is a symlink to "${target}", which climbs out of the root`)
      header.linkname = target
      this.symlinks.set(name, target)
    }
    if (h.type === 'link') {
      const canonTarget = canonicalEntryName(h.linkname ?? '')
      if ('problem' in canonTarget) throw refuse(raw, `is a hardlink whose target "${h.linkname}" ${canonTarget.problem}`)
      if (this.removedNames.has(canonTarget.name)) {
        throw refuse(raw, `is a hardlink to "${h.linkname}", which recipe.image.remove drops`, 'add this entry to recipe.image.remove as well')
      }
      // a link to a name an addition replaced: to the base file's new holder, or to what that name linked to
      const target = heir?.kind === 'node' ? heir.heldBy! : heir?.kind === 'alias' ? heir.target : canonTarget.name
      const targetKind = this.kept.get(target)
      if (targetKind === undefined) throw refuse(raw, `is a hardlink to "${h.linkname}", which is not an earlier entry of the archive`)
      if (targetKind === 'directory' || targetKind === 'symlink') throw refuse(raw, `is a hardlink to "${h.linkname}", which is a ${targetKind}`)
      header.linkname = target
    }
    this.addXattrs(header, name, pax)
    this.kept.set(name, kind)
    return {do: 'write', name, header, capture: this.capture.has(name) && h.type === 'file' && h.size <= CAPTURE_LIMIT}
  }

  /** a set-aside entry's content, once it is spooled (undefined: it had none) */
  recordSetAside(plan: Extract<EntryPlan, {do: 'set-aside'}>, spool: string | undefined): void {
    this.replaced.set(plan.name, {kind: 'node', raw: plan.raw, header: plan.header, spool})
  }

  private replacedTarget(linkname: string | null | undefined): Replaced | undefined {
    const target = canonicalEntryName(linkname ?? '')
    return 'problem' in target ? undefined : this.replaced.get(target.name)
  }

  /** puts the entry's xattrs in its pax header and in the list the file system is given */
  private addXattrs(header: Header, name: string, pax: CheckedPax): void {
    const xattrPax: Record<string, string> = {}
    for (const [key, value] of Object.entries(pax.xattrs)) {
      xattrPax[XATTR_PREFIX + key] = value
      this.xattrs.push({name, key, value: xattrValue(value)})
    }
    if (Object.keys(xattrPax).length) header.pax = xattrPax
  }
}

/** The stream half: reads the base archive once, asks the policy about each entry, writes the output, then the additions. */
async function transform(opts: TransformOptions, spool: Spool): Promise<TransformResult> {
  const policy = new EntryPolicy(opts)
  const captured: Record<string, Buffer> = {}
  let spooled = 0
  let lastName = '(start of archive)'

  const pack = tar.pack({highWaterMark: 1 << 20})
  const written = pipeline(pack as unknown as Readable, createWriteStream(opts.output, {highWaterMark: 1 << 20}))
  let writeError: Error | undefined
  written.catch((e: Error) => {
    writeError ??= e
  })
  // a failed write (disk full) must end the transform, not leave it waiting for the pack to take an entry
  const writeFailure = written.then(() => new Promise<never>(() => undefined))
  writeFailure.catch(() => undefined)
  const put = (header: Header, body: Buffer | AsyncIterable<unknown> | Readable) => Promise.race([packEntry(pack, header, body), writeFailure])

  const extract = tar.extract({highWaterMark: 1 << 20})
  // large reads: tar-stream's per-chunk cost, not the disk, bounds the transform
  const source = createReadStream(opts.input, {highWaterMark: 1 << 20})
  source.on('error', (e) => extract.destroy(e))
  // the loop below sees every read error; this keeps a late duplicate (after the loop has stopped) from crashing the process
  extract.on('error', () => undefined)
  source.pipe(extract as unknown as NodeJS.WritableStream)

  try {
    for await (const entry of extract) {
      // a damaged archive errors the entry too; the extractor's own error is the one reported below
      entry.on('error', () => undefined)
      lastName = entry.header.name
      const plan = policy.plan(entry.header)
      switch (plan.do) {
        case 'drop':
          await drain(entry)
          break
        case 'set-aside': {
          let content: string | undefined
          if (plan.header.size) {
            spool.dir ??= await mkdtemp(join(dirname(opts.output), '.replaced-'))
            content = join(spool.dir, String(spooled++))
            await pipeline(entry, createWriteStream(content))
          } else {
            await drain(entry)
          }
          policy.recordSetAside(plan, content)
          break
        }
        case 'heir':
          await drain(entry)
          await put(plan.header, plan.spool ? createReadStream(plan.spool) : Buffer.alloc(0))
          break
        case 'write':
          if (plan.capture) {
            const chunks: Buffer[] = []
            for await (const c of entry) chunks.push(c as Buffer)
            captured[plan.name] = Buffer.concat(chunks)
            await put(plan.header, captured[plan.name])
          } else {
            await put(plan.header, plan.header.size ? entry : Buffer.alloc(0))
            if (!plan.header.size) await drain(entry)
          }
      }
    }
  } catch (e) {
    source.destroy()
    pack.destroy()
    if (e instanceof InputError) throw e
    if (writeError) throw new StageError(`cannot write ${opts.output}: ${writeError.message}`, {cause: writeError, hint: 'check the free space where the build cache lives'})
    throw new InputError(`rootfs tarball ${opts.input} could not be read after entry "${lastName}": ${(e as Error).message}`, {
      cause: e,
      hint: 'the archive is damaged or truncated: download or build the base again',
    })
  }

  const {kept} = policy
  const placed: Record<string, string> = {}
  let added = 0
  for (const addition of planAdditions(opts.additions, kept, policy.symlinks)) {
    const header: Header = {name: addition.name, mode: addition.mode ?? 0o755, uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: new Date(opts.sourceDateEpoch * 1000)}
    if (addition.kind === 'directory') {
      await put({...header, name: `${addition.name}/`, type: 'directory'}, Buffer.alloc(0))
    } else if (addition.kind === 'symlink') {
      await put({...header, type: 'symlink', linkname: addition.target, mode: 0o777}, Buffer.alloc(0))
    } else if (addition.kind === 'file') {
      await put({...header, type: 'file', size: addition.content.length}, addition.content)
    } else {
      await put({...header, type: 'file', size: addition.size}, createReadStream(addition.source))
    }
    if (addition.original) placed[addition.original] = addition.name
    kept.set(addition.name, addition.kind === 'directory' ? 'directory' : addition.kind === 'symlink' ? 'symlink' : 'file')
    added++
  }
  pack.finalize()
  await written
  return {entries: kept.size, removed: policy.removed, added, xattrs: policy.xattrs, captured, placed}
}

/** The output header of a base entry at its canonical name: the source machine's details dropped, the time clamped. */
function outputHeader(name: string, h: TarHeader, pax: CheckedPax, clamp: (d: Date | undefined) => Date): Header {
  const header: Header = {
    name: name === '' ? './' : h.type === 'directory' ? `${name}/` : name,
    type: h.type === 'contiguous-file' ? 'file' : h.type,
    mode: h.mode & 0o7777,
    uid: pax.uid ?? h.uid,
    gid: pax.gid ?? h.gid,
    uname: h.uname,
    gname: h.gname,
    mtime: clamp(h.mtime),
    size: h.type === 'file' || h.type === 'contiguous-file' ? h.size : 0,
  }
  if (h.type === 'character-device' || h.type === 'block-device') {
    header.devmajor = h.devmajor
    header.devminor = h.devminor
  }
  return header
}

function entryKind(type: string | null | undefined): EntryKind | undefined {
  switch (type) {
    case 'directory':
      return 'directory'
    case 'file':
    case 'contiguous-file':
    case 'link':
      return 'file'
    case 'symlink':
      return 'symlink'
    case 'character-device':
    case 'block-device':
    case 'fifo':
      return 'other'
    default:
      return undefined
  }
}

interface CheckedPax {
  uid?: number
  gid?: number
  /** xattr name -> binary string */
  xattrs: Record<string, string>
}

function checkPax(raw: string, pax: Record<string, string>): CheckedPax {
  const out: CheckedPax = {xattrs: {}}
  for (const [key, value] of Object.entries(pax)) {
    if (key.startsWith(XATTR_PREFIX)) {
      const xattr = key.slice(XATTR_PREFIX.length)
      if (!/^(security|trusted|user|system)\.[\x21-\x7e]+$/.test(xattr)) throw refuse(raw, `has an extended attribute with an unsupported name "${xattr}"`)
      out.xattrs[xattr] = value
    } else if (key === 'uid' || key === 'gid') {
      const n = Number(value)
      if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw refuse(raw, `has an invalid pax ${key} "${value}"`)
      out[key] = n
    } else if (key.startsWith('GNU.sparse')) {
      throw refuse(raw, 'is a GNU sparse file, which the rootfs transform does not read', 'make the base tarball without --sparse')
    } else if (key.startsWith('SCHILY.acl') || key.startsWith('LIBARCHIVE.')) {
      throw refuse(raw, `has pax record "${key}", which cvm-image cannot carry into the image`, 'make the base tarball without ACLs (tar --no-acls)')
    } else if (!KEPT_PAX.has(key) && !DROPPED_PAX.has(key)) {
      throw refuse(raw, `has an unknown pax record "${key}"`, 'make the base tarball with GNU tar or mmdebstrap')
    }
  }
  return out
}

type PlannedAddition = Addition & {original?: string; mode?: number}

/**
 * Additions in output order, each at the name it really lands on in the base (through directory
 * symlinks such as lib -> usr/lib), with any missing parent directories made first.
 */
function planAdditions(additions: readonly Addition[], kept: Map<string, EntryKind>, symlinks: Map<string, string>): PlannedAddition[] {
  const planned = new Map<string, PlannedAddition>()
  for (const a of additions) {
    // a directory is wanted where the base has one, even behind a symlink (lib -> usr/lib): never over a link
    const name = a.kind === 'directory' ? resolveName(a.name, symlinks) : resolveParents(a.name, symlinks)
    if (a.kind === 'directory' && kept.get(name) === 'directory') continue
    const existing = kept.get(name)
    if (existing === 'directory' && a.kind !== 'directory') {
      throw new InputError(`cannot add "${a.name}": the base has a directory there`, {hint: 'add that directory to recipe.image.remove'})
    }
    planned.set(name, {...a, name, original: a.name})
  }
  for (const name of [...planned.keys()]) {
    for (const parent of parentsOf(name)) {
      if (!kept.has(parent) && !planned.has(parent)) planned.set(parent, {kind: 'directory', name: parent, mode: 0o755})
    }
  }
  return [...planned.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

/** Follows symlinks among a name's parents (only those the base holds), so the name is a real path. */
export function resolveParents(name: string, symlinks: Map<string, string>): string {
  let current = name
  for (let hop = 0; hop < SYMLINK_HOPS; hop++) {
    const link = parentsOf(current).find((p) => symlinks.has(p))
    if (!link) return current
    const dest = symlinkDestination(link, symlinks.get(link)!)
    if (dest === undefined) throw new InputError(`cannot place "${name}": the base's symlink "${link}" leaves the root`)
    current = [dest, current.slice(link.length + 1)].filter(Boolean).join('/')
  }
  throw new InputError(`cannot place "${name}": more than ${SYMLINK_HOPS} symlinks on its path in the base`)
}

/** Follows symlinks on the whole name, the last component included. */
function resolveName(name: string, symlinks: Map<string, string>): string {
  let current = resolveParents(name, symlinks)
  for (let hop = 0; hop < SYMLINK_HOPS && symlinks.has(current); hop++) {
    const dest = symlinkDestination(current, symlinks.get(current)!)
    if (dest === undefined) throw new InputError(`cannot place "${name}": the base's symlink "${current}" leaves the root`)
    current = resolveParents(dest, symlinks)
  }
  return current
}

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream) {
    // discard
  }
}

/** Writes one entry, waiting until the pack has taken all of it (backpressure included). */
export function packEntry(pack: Pack, header: Header, body: Buffer | AsyncIterable<unknown> | Readable): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (Buffer.isBuffer(body)) {
      pack.entry(header, body, (err) => (err ? reject(err) : resolve()))
      return
    }
    const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()))
    // a pack destroyed under the entry (its output failed: a full disk) destroys the entry's sink
    // with that error; without a listener of its own the sink's 'error' would crash the process
    sink.on('error', reject)
    ;(async () => {
      for await (const chunk of body) {
        // destroyed (the pack's output failed): the error listener above has rejected; stop reading
        if (sink.destroyed) return
        if (!sink.write(chunk as Buffer)) await drainOrClose(sink as unknown as NodeJS.EventEmitter)
      }
      if (!sink.destroyed) sink.end(undefined)
    })().catch((e) => {
      // the caller reports e; the sink only has to stop
      sink.destroy()
      reject(e)
    })
  })
}

/** Waits for the sink to take more, or to be gone: a sink destroyed while full never drains. */
function drainOrClose(sink: NodeJS.EventEmitter): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      sink.off('drain', done)
      sink.off('close', done)
      resolve()
    }
    sink.on('drain', done)
    sink.on('close', done)
  })
}
