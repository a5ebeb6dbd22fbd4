import {existsSync} from 'node:fs'
import {mkdir} from 'node:fs/promises'
import {join} from 'node:path'

import type {DistroModule} from '../distro/family.js'
import {BugError, InputError} from '../errors.js'
import type {KernelSourceSpec} from '../recipe/schema.js'
import {pinnedFile} from '../util/download.js'
import {run} from '../util/exec.js'
import {sha256, sha256File} from '../util/fsx.js'
import type {FetchedSource, SourceIO} from './source-io.js'
import {cachedTree, untar} from './tree-cache.js'

/**
 * Fetches the kernel source a recipe names and unpacks it once per digest into cacheDir/kernel-trees/.
 * Tarballs, archives and git trees are read here for every family; a distro's own kind (a Debian
 * source package, a source RPM) by its module.
 */
export async function fetchKernelSource(spec: KernelSourceSpec, io: SourceIO, distro: DistroModule): Promise<FetchedSource> {
  switch (spec.kind) {
    case 'tarball':
      return fromTarball(spec, io)
    case 'git':
      return fromGit(spec, io)
    case 'archive':
      return fromArchive(spec, io)
    default:
      if (!distro.sourceKinds.includes(spec.kind) || !distro.fetchSource) {
        throw new BugError(`recipe.kernel.source.kind ${spec.kind} reached the kernel-source stage of a ${distro.name} recipe, which the recipe check refuses`)
      }
      return distro.fetchSource(spec, io)
  }
}

async function fromTarball(spec: Extract<KernelSourceSpec, {kind: 'tarball'}>, io: SourceIO): Promise<FetchedSource> {
  if (!spec.sha256) {
    throw new InputError(`recipe.kernel.source ${spec.url} has no sha256`, {hint: 'pin the tarball: set recipe.kernel.source.sha256 to the publisher\'s checksum'})
  }
  const file = await pinnedFile(
    {url: spec.url, sha256: spec.sha256, pinnedBy: 'recipe.kernel.source.sha256', cacheDir: io.cacheDir, given: io.localFile ? {path: io.localFile, flag: '--kernel-source-file'} : undefined},
    {signal: io.signal, progress: io.progress},
  )
  const tree = await cachedTree(io, spec.sha256, (dest) => untar(file, dest, io))
  return {kind: 'tarball', tree, digest: spec.sha256}
}

/**
 * What a source needs before any work starts: an archive needs its file; a distro's own kind, what
 * its module says (a source RPM needs a sha256 in the recipe, since its file is checked against it).
 */
export function requireSourceInputs(spec: KernelSourceSpec, localFile: string | undefined, distro: DistroModule): void {
  distro.requireSourceInputs?.(spec, localFile)
  if (spec.kind === 'archive') requireArchiveFile(spec, localFile)
}

function requireArchiveFile(spec: Extract<KernelSourceSpec, {kind: 'archive'}>, localFile: string | undefined): void {
  if (!localFile) {
    throw new InputError(`recipe.kernel.source is the archive ${spec.file} (sha256 ${spec.sha256}), which cvm-image does not download`, {
      details: [`  where to get it: ${spec.origin}`],
      hint: `give your copy with --kernel-source-file <path of ${spec.file}>`,
    })
  }
}

async function fromArchive(spec: Extract<KernelSourceSpec, {kind: 'archive'}>, io: SourceIO): Promise<FetchedSource> {
  requireArchiveFile(spec, io.localFile)
  const file = io.localFile!
  io.progress(`checking ${file}`)
  const digest = await sha256File(file)
  if (digest !== spec.sha256) {
    throw new InputError(`--kernel-source-file ${file}: sha256 ${digest} is not the recipe's ${spec.sha256} (${spec.file})`, {
      hint: `give the archive the recipe pins (${spec.file}), or pin yours in recipe.kernel.source.sha256`,
    })
  }
  // one archive may hold several trees: each member is its own cached tree
  const tree = await cachedTree(io, sha256(`${digest}\0${spec.member}`), (dest) => untar(file, dest, io, spec.member))
  return {kind: 'archive', tree, digest: `${digest}:${spec.member}`}
}

async function fromGit(spec: Extract<KernelSourceSpec, {kind: 'git'}>, io: SourceIO): Promise<FetchedSource> {
  const repo = join(io.cacheDir, 'git', sha256(spec.url).slice(0, 16))
  if (!existsSync(join(repo, 'HEAD'))) await run('git', ['init', '-q', '--bare', repo], {what: 'make the source git cache'})
  io.progress(`fetching ${spec.ref} from ${spec.url}`)
  await run('git', ['-C', repo, 'fetch', '--depth=1', spec.url, spec.ref], {
    logFile: io.logFile,
    signal: io.signal,
    what: `fetch ${spec.ref} from ${spec.url}`,
    hint: 'check recipe.kernel.source.url and .ref (a tag, branch or full commit id)',
  })
  const commit = (await run('git', ['-C', repo, 'rev-parse', 'FETCH_HEAD^{commit}'])).stdout.trim()
  const tree = await cachedTree(io, commit, async (dest) => {
    await mkdir(dest, {recursive: true})
    // git archive gives the tree without .git, so setlocalversion sees no repository
    const tar = join(io.work, 'git.tar')
    await run('git', ['-C', repo, 'archive', '--format=tar', '-o', tar, commit], {what: 'export the source tree'})
    await run('tar', ['-xf', tar, '-C', dest], {what: 'unpack the source tree'})
  })
  return {kind: 'git', tree, digest: commit}
}
