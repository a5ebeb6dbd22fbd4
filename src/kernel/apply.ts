import {readFile} from 'node:fs/promises'

import {InputError} from '../errors.js'
import {run} from '../util/exec.js'
import {sha256} from '../util/fsx.js'

export interface PatchToApply {
  /** how people know it: "5.10/series.yaml: 1f221a0d0dbf swiotlb: respect min_align_mask" */
  label: string
  /** the patch file */
  path: string
}

export interface AppliedPatch {
  label: string
  sha256: string
}

const PATCH_ARGS = ['-p1', '--forward', '--batch', '--no-backup-if-mismatch', '--reject-file=-', '-s']

/**
 * Applies patches in order to tree, each first checked with --dry-run so that a patch that does
 * not apply changes nothing. Callers give a scratch copy of the tree: a failure then leaves the
 * source untouched and nothing is built. The error names the patch, the file and the hunk.
 */
export async function applyPatches(tree: string, patches: PatchToApply[], opts: {logFile?: string; progress?: (line: string) => void} = {}): Promise<AppliedPatch[]> {
  const applied: AppliedPatch[] = []
  for (const [i, p] of patches.entries()) {
    opts.progress?.(`checking patch ${i + 1}/${patches.length}: ${p.label}`)
    const dry = await run('patch', [...PATCH_ARGS.filter((a) => a !== '-s'), '--dry-run', '-d', tree, '-i', p.path], {reject: false, logFile: opts.logFile})
    if (dry.exitCode !== 0) throw await patchFailure(p, `${dry.stdout}\n${dry.stderr}`, applied.length)
    await run('patch', [...PATCH_ARGS, '-d', tree, '-i', p.path], {what: `apply ${p.label}`, logFile: opts.logFile})
    applied.push({label: p.label, sha256: sha256(await readFile(p.path))})
  }
  return applied
}

async function patchFailure(p: PatchToApply, output: string, appliedBefore: number): Promise<InputError> {
  const hunks = await patchHunks(p.path)
  const failures: string[] = []
  let file = '?'
  for (const line of output.split('\n')) {
    const f = /^(?:checking|patching) file '?([^']+?)'?$/.exec(line.trim())
    if (f) file = f[1]
    const h = /^Hunk #(\d+) FAILED at (\d+)/.exec(line.trim())
    if (h) {
      const header = hunks.find((x) => x.file === file)?.hunks[Number(h[1]) - 1] ?? ''
      failures.push(`${file}: hunk #${h[1]} ${header} failed (at line ${h[2]} of the tree's file)`)
    }
    if (/can't find file to patch/.test(line)) failures.push(`a file the patch changes is missing from the tree (${hunks.map((x) => x.file).join(', ')})`)
    if (/Reversed \(or previously applied\) patch detected/.test(line)) failures.push(`${file}: the change is already in the tree (reversed or previously applied)`)
  }
  if (!failures.length) failures.push(...output.trim().split('\n').slice(-5))
  return new InputError(`patch ${p.label} does not apply: ${failures[0]}`, {
    details: [`  patch file: ${p.path}`, ...failures.slice(1).map((f) => `  ${f}`), `  ${appliedBefore} patch(es) before it applied; the source tree is unchanged and nothing was built`],
    hint: 'refresh the patch against this kernel version, or drop it from the series if the source already has the change',
  })
}

/** The files a patch changes and its hunks, for naming the hunk that failed. */
export async function patchHunks(file: string): Promise<Array<{file: string; hunks: string[]}>> {
  const out: Array<{file: string; hunks: string[]}> = []
  for (const line of (await readFile(file, 'utf8')).split('\n')) {
    if (line.startsWith('+++ ')) out.push({file: line.slice(4).split('\t')[0].replace(/^b\//, ''), hunks: []})
    else if (line.startsWith('@@ ') && out.length) out.at(-1)!.hunks.push(line)
  }
  return out
}
