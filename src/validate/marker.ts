import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import type {PatchRecord} from '../kernel/series-apply.js'

/** What the marker lookup reads of the patch stage's record of an applied patch. */
export type AppliedPatch = Pick<PatchRecord, 'file' | 'subject'>

/**
 * The boot line a series' marker patch prints (its pr_info text), read from the patch itself so the
 * check follows the series: a local patch whose subject or file name says "marker".
 */
export async function markerLine(kernelsDir: string, applied: AppliedPatch[] | undefined, line?: string): Promise<string | undefined> {
  for (const p of applied ?? []) {
    if (!p.file || !/marker/i.test(`${p.subject ?? ''} ${p.file}`)) continue
    const text = await readPatch(kernelsDir, p.file, line)
    const m = /^\+.*\bpr_(?:info|notice|warn|err)\("((?:[^"\\]|\\[^n])*)(?:\\n)?"\)/m.exec(text)
    if (m) return m[1]
  }
  return undefined
}

/** A series patch by its path under kernels/ (6.1/x.patch), or by its bare name in the recipe's kernel line. */
async function readPatch(kernelsDir: string, file: string, line?: string): Promise<string> {
  for (const path of [join(kernelsDir, file), ...(line ? [join(kernelsDir, line, file)] : [])]) {
    const text = await readFile(path, 'utf8').catch(() => undefined)
    if (text !== undefined) return text
  }
  return ''
}
