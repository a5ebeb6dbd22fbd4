import {statSync} from 'node:fs'
import {rename} from 'node:fs/promises'
import {join} from 'node:path'

import {distroOf} from '../../distro/index.js'
import {BugError, InputError} from '../../errors.js'
import {decompressRootfs} from '../../rootfs/decompress.js'
import {diskToRootfs, isDiskFormat} from '../../rootfs/disk-base.js'
import {countEntries} from '../../rootfs/scan.js'
import type {RecipeBase} from '../../recipe/schema.js'
import {downloadPinned} from '../../util/download.js'
import {sha256File, type Json} from '../../util/fsx.js'
import type {BuildContext, StageOf} from '../stage.js'

type ImageBase = Extract<RecipeBase, {kind: 'image'}>

/** The sha256 a build trusts for an image base: the recipe's pin, else the one the user vouches for. */
function trustedSha256(ctx: BuildContext, base: ImageBase): string | undefined {
  return base.sha256 ?? ctx.options.baseSha256
}

/** What determines the rootfs: the request a distro module builds it from (mmdebstrap), or an image base's content (its digest, or the local file's identity). */
export type BaseInputs =
  | ({kind: Exclude<RecipeBase['kind'], 'image'>} & Record<string, Json>)
  | {kind: 'image'; format: ImageBase['format']; sha256: string | null; file: {path: string; size: number | null; mtimeMs: number | null} | null; url: string | null}

function baseInputs(ctx: BuildContext): BaseInputs {
  const r = ctx.recipe.recipe
  const base = r.base
  if (base.kind === 'mmdebstrap') {
    const distro = distroOf(r)
    if (!distro.rootfsInputs) throw new BugError(`a ${base.kind} base reached the base stage of a ${distro.name} recipe, which the recipe check refuses`)
    return {kind: base.kind, ...distro.rootfsInputs(base, r.source_date_epoch)}
  }
  // an image base is cached by its content: the pinned digest, or the local file's identity until it is hashed in run()
  const sha = trustedSha256(ctx, base)
  const file = ctx.options.baseFile
  const st = file && !sha ? statSync(file, {throwIfNoEntry: false}) : undefined
  const fileId = file && !sha ? {path: file, size: st?.size ?? null, mtimeMs: st?.mtimeMs ?? null} : null
  return {kind: base.kind, format: base.format, sha256: sha ?? null, file: fileId, url: sha ? null : base.url}
}

/** base: the distro's root filesystem as an uncompressed tarball (out/rootfs.tar). */
export const baseStage: StageOf<'base', BaseInputs, never> = {
  name: 'base',
  title: 'base rootfs',
  code: import.meta.url,
  needs: [],
  inputs: baseInputs,
  async run(ctx, io, inputs) {
    const r = ctx.recipe.recipe
    const base = r.base
    const output = join(io.out, 'rootfs.tar')
    let source: string
    if (base.kind !== 'image') {
      const distro = distroOf(r)
      if (!distro.buildRootfs) throw new BugError(`a ${base.kind} base reached the base stage of a ${distro.name} recipe, which the recipe check refuses`)
      const tmp = join(io.work, 'rootfs.tar')
      source = await distro.buildRootfs(base, tmp, {sourceDateEpoch: r.source_date_epoch, tmpDir: io.work, logFile: io.logFile, signal: io.signal, onLine: (l) => io.progress(l.slice(0, 100))})
      await rename(tmp, output)
    } else {
      const sha = (inputs.kind === 'image' && inputs.sha256) || undefined
      let file: string
      if (ctx.options.baseFile) {
        file = ctx.options.baseFile
        if (sha) {
          const got = await sha256File(file)
          if (got !== sha) throw new InputError(`--base-file ${file} has sha256 ${got}, not ${sha}`, {hint: 'give the file the recipe (or --base-sha256) pins, or the matching --base-sha256'})
        }
      } else if (!sha) {
        throw new InputError(`recipe ${r.id}: base.sha256 is null, so the download of ${base.url} cannot be checked`, {
          hint: 'pass --base-sha256 <sha256 you verified>, or download the file yourself and pass --base-file <path>',
        })
      } else {
        io.progress(`downloading ${base.url}`)
        file = await downloadPinned(base.url, sha, join(ctx.cacheDir, 'downloads', sha), {signal: io.signal, progress: io.progress, pinnedBy: 'recipe.base.sha256'})
      }
      source = ctx.options.baseFile ? `file ${ctx.options.baseFile}` : base.url
      if (isDiskFormat(base.format)) {
        const read = await diskToRootfs(file, base.format, output, io.work, {progress: io.progress, signal: io.signal, logFile: io.logFile})
        io.log(`read ${read.where} of the ${base.format} disk: ${read.entries} entries, ${read.files} files (${read.bytes} bytes), ${read.hardlinks} hardlinks, ${read.xattrs} xattrs`)
        if (read.sockets.length) io.log(`left out ${read.sockets.length} sockets (tar has no form for them): ${read.sockets.slice(0, 5).join(', ')}`)
        source += ` (${read.where})`
      } else {
        io.progress(`unpacking ${base.format}`)
        await decompressRootfs(file, base.format, output, io.work)
      }
    }
    io.progress('checking the rootfs tarball')
    const entries = await countEntries(output)
    return {source, sha256: await sha256File(output), entries}
  },
}
