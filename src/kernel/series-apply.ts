import {InputError} from '../errors.js'
import {applyPatch, patchFailure, patchFit} from './apply.js'
import {fixInTree, type Fix} from './fixes.js'
import {CONTROL_KINDS, entryLabel, type PatchKind, type Series, type SeriesEntry} from './series.js'
import type {UpstreamPatches} from './upstream.js'

/** One entry of a series as the patch stage dealt with it: the one record of an applied (or not) patch. */
export interface PatchRecord {
  series: string
  kind: PatchKind | 'upstream'
  subject: string
  /** an upstream commit entry's id */
  id?: string
  /** a local patch: its path under kernels/ (5.4/0100-swiotlb-min-align-mask.patch) */
  file?: string
  backports: string[]
  fixes: string[]
  /** of the patch text that was applied */
  sha256?: string
  /** withheld: a control build leaves every entry but the build fixes out */
  action: 'applied' | 'skipped' | 'withheld'
  reason: string
}

export interface SeriesRun {
  /** apply only the build fixes: the unpatched kernel, to show what the series fixes */
  control: boolean
  fixes: Fix[]
  upstream: UpstreamPatches
  logFile?: string
  progress(line: string): void
  log(line: string): void
}

/**
 * Applies the series in order to tree (a scratch copy). What a tree already has is read from the
 * tree: an entry whose fixes the tree shows (kernels/fixes.yaml probes) is skipped, and so is a
 * patch that applies in reverse; a patch that does neither stops the build naming its hunk.
 * Once the series is applied, every fix an applied entry claims must show in the tree.
 */
export async function applySeries(tree: string, series: Series[], run: SeriesRun): Promise<PatchRecord[]> {
  const records: PatchRecord[] = []
  const entries = series.flatMap((s) => s.entries)
  for (const [i, e] of entries.entries()) {
    const label = entryLabel(e)
    const record = recordOf(e)
    run.progress(`patch ${i + 1}/${entries.length}: ${label}`)
    if (run.control && !(CONTROL_KINDS as string[]).includes(e.kind)) {
      records.push({...record, action: 'withheld', reason: 'control build: only build and tree fixes apply'})
      run.log(`withheld ${label}: control build`)
      continue
    }
    const had = await fixesShown(tree, run.fixes, e.fixes)
    if (had) {
      records.push({...record, action: 'skipped', reason: had})
      run.log(`skip ${label}: ${had}`)
      continue
    }
    const path = e.kind === 'upstream' ? await run.upstream.resolve({id: e.id, subject: e.subject, mainline: e.mainline, series: e.series}) : e.path
    const {fit, output} = await patchFit(tree, {label, path}, run.logFile)
    if (fit === 'in-tree') {
      records.push({...record, action: 'skipped', reason: 'already in the tree: the patch applies in reverse'})
      run.log(`skip ${label}: already in the tree (applies in reverse)`)
      continue
    }
    if (fit === 'conflicts') throw await patchFailure({label, path}, output, records.filter((r) => r.action === 'applied').length)
    const sha256 = await applyPatch(tree, {label, path}, run.logFile)
    records.push({...record, sha256, action: 'applied', reason: e.kind === 'build-fix' ? 'build fix' : e.kind === 'tree-fix' ? 'tree fix' : `not in the tree${e.fixes.length ? ` (${e.fixes.join(', ')} missing)` : ''}`})
    run.log(`applied ${label} sha256 ${sha256}`)
  }
  // a fix may take several patches (code, then the Kconfig select): each claim is checked on the whole series' result
  for (const r of records.filter((x) => x.action === 'applied')) {
    const missing = []
    for (const id of r.fixes) {
      const state = await fixInTree(tree, run.fixes.find((x) => x.id === id)!)
      if (state.state === 'missing') missing.push(`${id}: ${state.evidence.join('; ')}`)
    }
    if (missing.length) {
      throw new InputError(`patch ${r.series}: ${r.id ? `${r.id} ${r.subject}` : r.file!.split('/').pop()} applied, but the patched tree does not show the fix it claims: ${missing.join('; ')}`, {
        hint: 'the patch and the fix\'s probes in kernels/fixes.yaml disagree: fix whichever is wrong',
      })
    }
  }
  return records
}

function recordOf(e: SeriesEntry): Omit<PatchRecord, 'action' | 'reason'> {
  const common = {series: e.series, kind: e.kind, subject: e.subject, fixes: e.fixes}
  return e.kind === 'upstream'
    ? {...common, id: e.id, backports: [e.id]}
    : {...common, file: `${e.series.split('/')[0]}/${e.file}`, backports: e.backports}
}

/** Why the tree needs none of the entry: it shows every fix the entry makes (or the fix does not apply to it); undefined otherwise. */
async function fixesShown(tree: string, fixes: Fix[], ids: string[]): Promise<string | undefined> {
  if (!ids.length) return undefined
  const shown: string[] = []
  for (const id of ids) {
    const state = await fixInTree(tree, fixes.find((f) => f.id === id)!)
    if (state.state === 'missing') return undefined
    shown.push(state.state === 'present' ? `the tree already has ${id} (${state.evidence[0]})` : `${id} does not apply to this tree (${state.evidence[0]})`)
  }
  return shown.join('; ')
}
