import {readFile} from 'node:fs/promises'

import {InputError} from '../errors.js'
import {run} from '../util/exec.js'
import {sha256} from '../util/fsx.js'

export interface PatchToApply {
  /** how people know it: "5.4/series.yaml: 0100-swiotlb-min-align-mask.patch" */
  label: string
  /** the patch file */
  path: string
}

const PATCH_ARGS = ['-p1', '--forward', '--batch', '--no-backup-if-mismatch', '--reject-file=-', '-s']

export type PatchFit = 'applies' | 'in-tree' | 'conflicts'

/**
 * Whether a patch applies to tree, is already in it (it applies in reverse: the tree has exactly
 * its result), or neither. This reads the tree's content, never its version: distro trees carry
 * fixes at old version numbers. `output` is patch's own report of the forward try.
 */
export async function patchFit(tree: string, p: PatchToApply, logFile?: string): Promise<{fit: PatchFit; output: string}> {
  const fwd = await run('patch', [...PATCH_ARGS.filter((a) => a !== '-s'), '--dry-run', '-d', tree, '-i', p.path], {reject: false, logFile})
  if (fwd.exitCode === 0) return {fit: 'applies', output: fwd.stdout}
  // -f, not --batch: with --batch, patch ignores -R on a patch it finds unreversed and reports success;
  // no fuzz: a reverse fit with fuzz can succeed on a tree that lacks the change
  const rev = await run('patch', ['-p1', '-R', '-f', '--fuzz=0', '--dry-run', '-s', '-d', tree, '-i', p.path], {reject: false, logFile})
  return {fit: rev.exitCode === 0 ? 'in-tree' : 'conflicts', output: `${fwd.stdout}\n${fwd.stderr}`}
}

/** Applies one patch that patchFit found to apply. */
export async function applyPatch(tree: string, p: PatchToApply, logFile?: string): Promise<string> {
  await run('patch', [...PATCH_ARGS, '-d', tree, '-i', p.path], {what: `apply ${p.label}`, logFile})
  return sha256(await readFile(p.path))
}

/** The error for a patch that neither applies nor is in the tree: the patch, the file and the hunk. */
export async function patchFailure(p: PatchToApply, output: string, appliedBefore: number): Promise<InputError> {
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
