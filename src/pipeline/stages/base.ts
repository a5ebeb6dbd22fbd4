import {statSync} from 'node:fs'
import {rename} from 'node:fs/promises'
import {join} from 'node:path'

import {distroFor, distroOf} from '../../distro/index.js'
import {BugError, InputError} from '../../errors.js'
import {imageBaseToRootfs} from '../../rootfs/image-base.js'
import {countEntries} from '../../rootfs/scan.js'
import type {RecipeBase} from '../../recipe/schema.js'
import {sha256File, type Json} from '../../util/fsx.js'
import type {BuildContext, StageOf} from '../stage.js'

type ImageBase = Extract<RecipeBase, {kind: 'image'}>
type BuiltBase = Exclude<RecipeBase, ImageBase>

/** The sha256 a build trusts for an image base: the recipe's pin, else the one the user vouches for. */
function trustedSha256(ctx: BuildContext, base: ImageBase): string | undefined {
  return base.sha256 ?? ctx.options.baseSha256
}

/**
 * What determines the rootfs. A built base (mmdebstrap): the recipe's base as the distro module
 * builds it, and what the module says it is made of. An image base: its URL and format, its content
 * (the trusted digest, or the local file's identity until it is hashed in run()) and the local file
 * it is read from, which the result names.
 */
export type BaseInputs =
  | {kind: BuiltBase['kind']; family: string; base: BuiltBase; sourceDateEpoch: number; rootfs: Record<string, Json>}
  | {kind: 'image'; format: ImageBase['format']; url: string; sha256: string | null; file: {path: string; size: number | null; mtimeMs: number | null} | null}

function baseInputs(ctx: BuildContext): BaseInputs {
  const r = ctx.recipe.recipe
  const base = r.base
  if (base.kind !== 'image') {
    const distro = distroOf(r)
    if (!distro.rootfsInputs) throw new BugError(`a ${base.kind} base reached the base stage of a ${distro.name} recipe, which the recipe check refuses`)
    return {kind: base.kind, family: r.distro.family, base, sourceDateEpoch: r.source_date_epoch, rootfs: distro.rootfsInputs(base, r.source_date_epoch)}
  }
  const sha = trustedSha256(ctx, base)
  const path = ctx.options.baseFile
  // a pinned file is named by its digest; an unpinned one by its identity until run() hashes it
  const st = path && !sha ? statSync(path, {throwIfNoEntry: false}) : undefined
  const file = path ? {path, size: sha ? null : (st?.size ?? null), mtimeMs: sha ? null : (st?.mtimeMs ?? null)} : null
  return {kind: base.kind, format: base.format, url: base.url, sha256: sha ?? null, file}
}

/** base: the distro's root filesystem as an uncompressed tarball (out/rootfs.tar). */
export const baseStage: StageOf<'base', BaseInputs, never> = {
  name: 'base',
  title: 'base rootfs',
  code: import.meta.url,
  needs: [],
  inputs: baseInputs,
  async run(io, inputs) {
    const output = join(io.out, 'rootfs.tar')
    let source: string
    if (inputs.kind !== 'image') {
      const distro = distroFor(inputs.family)
      if (!distro.buildRootfs) throw new BugError(`a ${inputs.kind} base reached the base stage of a ${distro.name} recipe, which the recipe check refuses`)
      const tmp = join(io.work, 'rootfs.tar')
      source = await distro.buildRootfs(inputs.base, tmp, {sourceDateEpoch: inputs.sourceDateEpoch, tmpDir: io.work, logFile: io.logFile, signal: io.signal, onLine: (l) => io.progress(l.slice(0, 100))})
      await rename(tmp, output)
    } else {
      const {url, format} = inputs
      const sha = inputs.sha256 ?? undefined
      if (!inputs.file && !sha) {
        throw new InputError(`base.sha256 is null, so the download of ${url} cannot be checked`, {
          hint: 'pass --base-sha256 <sha256 you verified>, or download the file yourself and pass --base-file <path>',
        })
      }
      // the bytes are copied into the cache once and read only from there (rootfs/image-base.ts)
      source = (inputs.file ? `file ${inputs.file.path}` : url) + (await imageBaseToRootfs({url, format, sha256: sha, file: inputs.file?.path}, output, {cacheDir: io.env.cacheDir, work: io.work, progress: io.progress, log: io.log, signal: io.signal, logFile: io.logFile}))
    }
    io.progress('checking the rootfs tarball')
    const entries = await countEntries(output)
    return {source, sha256: await sha256File(output), entries}
  },
}
