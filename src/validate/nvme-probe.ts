import {createHash} from 'node:crypto'
import {existsSync} from 'node:fs'
import {mkdir, mkdtemp, readFile, rename, rm} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {execa} from 'execa'

import {HostError} from '../errors.js'
import type {Outcome} from './check-types.js'

/**
 * nvme-offset-probe: a static C program the validator uploads into the guest to catch the
 * NVMe-through-SWIOTLB in-page-offset bug (fixed in 5.12 by min_align_mask), which dd cannot show
 * (it page-aligns its buffers). It writes with O_DIRECT from buffers at in-page offsets 0..3584,
 * sizes 512..12288, in two buffer layouts (physically contiguous pages; one segment per page), and
 * reads back twice: through the dropped page cache (the disk's bytes: write-side) and with O_DIRECT
 * into a buffer at another in-page offset (read-side). See the C source's header for its output.
 *
 * The caller: `const bin = await buildProbe(cacheDir)`, upload bin.path to PROBE_REMOTE_PATH,
 * exec probeArgv(), remove it, then probeOutcome(parseProbeOutput(stdout, exitCode)).
 */

// src/validate/nvme-probe.ts and dist/validate/nvme-probe.js both sit two levels below the package root
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const PROBE_SOURCE = join(packageRoot, 'src', 'validate', 'probe', 'nvme-offset-probe.c')
/** the serial of the scratch NVMe disk the validator attaches (the probe and the dd script find it by it) */
export const SCRATCH_SERIAL = 'cvmscratch'
/** where the caller puts the binary in the guest (tmpfs; removed after the run) */
export const PROBE_REMOTE_PATH = '/run/cvm-nvme-offset-probe'
export const PROBE_CFLAGS = ['-O2', '-static', '-Wall']
export const PROBE_CASES_PER_LAYOUT = 192
export const PROBE_LAYOUTS = ['contig', 'scattered'] as const
/** under TCG a run takes about a second on 6.1; failing kernels add NVMe error handling */
export const PROBE_TIMEOUT_MS = 300_000

export type ProbeLayout = (typeof PROBE_LAYOUTS)[number]
export const PROBE_KINDS = ['write-error', 'write-corrupt', 'ref-error', 'read-error', 'read-corrupt', 'disk-mismatch', 'disk-error'] as const
export type ProbeKind = (typeof PROBE_KINDS)[number]
const WRITE_SIDE: ProbeKind[] = ['write-error', 'write-corrupt']
const READ_SIDE: ProbeKind[] = ['read-error', 'read-corrupt']

export interface ProbeBinary {
  path: string
  /** sha256 of the C source: the cache key */
  sourceSha256: string
  /** false when taken from the cache */
  built: boolean
}

/**
 * Builds the probe once per source digest into <cacheDir>/nvme-offset-probe/<sha256>/ with
 * `gcc -O2 -static` (glibc's static libc from libc6-dev), so it runs in any x86_64 guest userland.
 */
export async function buildProbe(cacheDir: string, opts: {source?: string; cc?: string} = {}): Promise<ProbeBinary> {
  const source = opts.source ?? PROBE_SOURCE
  const cc = opts.cc ?? 'gcc'
  const text = await readFile(source)
  const sourceSha256 = createHash('sha256').update(text).digest('hex')
  const dir = join(cacheDir, 'nvme-offset-probe', sourceSha256)
  const path = join(dir, 'nvme-offset-probe')
  if (existsSync(path)) return {path, sourceSha256, built: false}
  await mkdir(dirname(dir), {recursive: true})
  const tmp = await mkdtemp(join(dirname(dir), `.tmp-${sourceSha256.slice(0, 12)}-`))
  try {
    const r = await execa(cc, [...PROBE_CFLAGS, '-o', join(tmp, 'nvme-offset-probe'), source], {reject: false, all: true})
    if ((r as {code?: string}).code === 'ENOENT') {
      throw new HostError(`${cc}: not found on this host (needed to build the NVMe offset probe, a static C program run in the guest)`, {
        hint: 'install gcc and libc6-dev (apt-get install gcc libc6-dev), or run `cvm-image doctor --install` as root',
      })
    }
    if (r.exitCode !== 0) {
      const out = String(r.all ?? '')
      const noLibc = /cannot find -lc\b|stdio\.h: No such file|No such file or directory\s*\n.*#include/.test(out)
      throw new HostError(`building the NVMe offset probe with ${cc} ${PROBE_CFLAGS.join(' ')} failed (exit ${r.exitCode})${noLibc ? ': the C library headers or static libc are missing' : ''}`, {
        details: out.split('\n').slice(-15).map((l) => `  | ${l}`),
        hint: 'the probe needs gcc and libc6-dev (glibc headers and libc.a): apt-get install gcc libc6-dev',
      })
    }
    await rm(dir, {recursive: true, force: true})
    await rename(tmp, dir).catch(async (e: NodeJS.ErrnoException) => {
      // another build of the same source got there first: take its result
      if (!existsSync(path)) throw e
    })
    return {path, sourceSha256, built: true}
  } finally {
    await rm(tmp, {recursive: true, force: true})
  }
}

/** The guest command line: the scratch NVMe disk is found by its serial in /sys/block. */
export function probeArgv(opts: {remotePath?: string; serial?: string; device?: string} = {}): string[] {
  const bin = opts.remotePath ?? PROBE_REMOTE_PATH
  return opts.device ? [bin, opts.device] : [bin, '--serial', opts.serial ?? SCRATCH_SERIAL]
}

export interface ProbeFailure {
  layout: ProbeLayout
  /** in-page offset of the write buffer */
  woff: number
  /** in-page offset of the O_DIRECT read buffer */
  roff: number
  size: number
  /** the case's index (its region on the disk is case * 16 KiB) */
  case: number
  /** the first of kinds: write-error, write-corrupt, ref-error, read-error, read-corrupt */
  kind: ProbeKind
  kinds: ProbeKind[]
  /** first differing byte of `kind` in the transfer; -1 for errors */
  first: number
  want?: number
  got?: number
  ndiff?: number
  /** errno name, or 'short' for a short transfer */
  errno?: string
  line: string
}

export type ProbeCounts = Record<ProbeKind, number>

export interface ProbeLayoutSummary {
  layout: ProbeLayout
  cases: number
  ok: number
  failed: number
  counts: ProbeCounts
  /** whether the buffers had the layout, proven by their PFNs (contiguous / scattered), or not / unknown */
  phys?: string
}

export interface ProbeRun {
  header?: {target: string; type: string; bytes: number; cases: number; mode: string}
  failures: ProbeFailure[]
  layouts: ProbeLayoutSummary[]
  total?: {cases: number; ok: number; failed: number; counts: ProbeCounts; elapsedMs: number}
  /** the probe's ERROR line (setup error, exit 2) */
  error?: string
  exitCode?: number
  /** lines that are none of the probe's (stderr, shell noise) */
  other: string[]
}

function fields(line: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const tok of line.split(/\s+/).slice(1)) {
    const eq = tok.indexOf('=')
    if (eq > 0) out[tok.slice(0, eq)] = tok.slice(eq + 1)
  }
  return out
}

const isKind = (s: string): s is ProbeKind => (PROBE_KINDS as readonly string[]).includes(s)
const isLayout = (s: string): s is ProbeLayout => (PROBE_LAYOUTS as readonly string[]).includes(s)
const counts = (f: Record<string, string>): ProbeCounts => Object.fromEntries(PROBE_KINDS.map((k) => [k, Number(f[k] ?? 0)])) as ProbeCounts
const hex = (s: string | undefined) => (s === undefined ? undefined : Number.parseInt(s, 16))

/** Parses the probe's stdout (PROBE / BUF / FAIL / SUMMARY / TOTAL / ERROR lines). */
export function parseProbeOutput(stdout: string, exitCode?: number): ProbeRun {
  const run: ProbeRun = {failures: [], layouts: [], other: [], exitCode}
  const phys = new Map<string, string>()
  for (const raw of stdout.split('\n')) {
    const line = raw.trim()
    if (!line) continue
    const word = line.split(/\s/, 1)[0]
    const f = fields(line)
    if (word === 'PROBE') {
      run.header = {target: f.target ?? '', type: f.type ?? '', bytes: Number(f.bytes ?? 0), cases: Number(f.cases ?? 0), mode: f.mode ?? ''}
    } else if (word === 'BUF' && f.layout) {
      phys.set(f.layout, f.phys ?? 'unknown')
    } else if (word === 'FAIL' && f.layout && isLayout(f.layout) && f.kind && isKind(f.kind)) {
      run.failures.push({
        layout: f.layout,
        woff: Number(f.woff),
        roff: Number(f.roff),
        size: Number(f.size),
        case: Number(f.case),
        kind: f.kind,
        kinds: (f.kinds ?? f.kind).split(',').filter(isKind),
        first: Number(f.first ?? -1),
        want: hex(f.want),
        got: hex(f.got),
        ndiff: f.ndiff === undefined ? undefined : Number(f.ndiff),
        errno: f.errno,
        line,
      })
    } else if (word === 'SUMMARY' && f.layout && isLayout(f.layout)) {
      run.layouts.push({layout: f.layout, cases: Number(f.cases), ok: Number(f.ok), failed: Number(f.failed), counts: counts(f), phys: phys.get(f.layout)})
    } else if (word === 'TOTAL') {
      run.total = {cases: Number(f.cases), ok: Number(f.ok), failed: Number(f.failed), counts: counts(f), elapsedMs: Number(f.elapsed_ms ?? 0)}
    } else if (word === 'ERROR') {
      run.error = (f.msg ?? line.replace(/^ERROR\s*/, '')).replace(/_/g, ' ')
    } else {
      run.other.push(line)
    }
  }
  return run
}

/** "contig woff=512 roff=2560 size=1024: write-corrupt at byte 0 (want 0x1f, got 0x00, 512 bytes differ)" */
export function describeFailure(x: ProbeFailure): string {
  const what = x.first >= 0 ? `${x.kind} at byte ${x.first} (want 0x${(x.want ?? 0).toString(16).padStart(2, '0')}, got 0x${(x.got ?? 0).toString(16).padStart(2, '0')}${x.ndiff !== undefined ? `, ${x.ndiff} bytes differ` : ''})` : `${x.kind} (${x.errno ?? 'error'})`
  const also = x.kinds.filter((k) => k !== x.kind)
  return `${x.layout} woff=${x.woff} roff=${x.roff} size=${x.size}: ${what}${also.length ? ` + ${also.join(', ')}` : ''}`
}

function layoutCounts(l: ProbeLayoutSummary): string {
  const n = (ks: ProbeKind[]) => ks.reduce((s, k) => s + (l.counts[k] ?? 0), 0)
  const parts = [`${l.ok}/${l.cases} ok`]
  const side = (name: string, ks: ProbeKind[]) => {
    if (n(ks) === 0) return
    parts.push(`${name} ${ks.filter((k) => l.counts[k]).map((k) => `${l.counts[k]} ${k}`).join(' + ')}`)
  }
  side('write-side', WRITE_SIDE)
  side('read-side', READ_SIDE)
  if (l.counts['ref-error']) parts.push(`${l.counts['ref-error']} ref-error`)
  return `${l.layout}: ${parts.join(', ')}`
}

const FIRST_FAILURES = 5

/** up to 5 failing cases, the first of each layout and kind before any second one of a pair */
export function firstFailures(failures: ProbeFailure[], n = FIRST_FAILURES): ProbeFailure[] {
  const seen = new Set<string>()
  const picked = failures.filter((f) => {
    const key = `${f.layout}/${f.kind}`
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
  for (const f of failures) if (picked.length < n && !picked.includes(f)) picked.push(f)
  return picked.slice(0, n).sort((a, b) => failures.indexOf(a) - failures.indexOf(b))
}

/** The nvme-integrity check's verdict from one probe run. */
export function probeOutcome(run: ProbeRun): Outcome {
  const fail = (evidence: string): Outcome => ({verdict: 'fail', evidence})
  if (run.error) return fail(`the NVMe offset probe could not run: ${run.error} (exit ${run.exitCode ?? '?'})`)
  const expectedCases = PROBE_CASES_PER_LAYOUT * PROBE_LAYOUTS.length
  if (!run.total) {
    const tail = run.other.slice(-3).join('; ')
    return fail(`the NVMe offset probe stopped before its TOTAL line (exit ${run.exitCode ?? '?'}; ${run.layouts.length} of ${PROBE_LAYOUTS.length} layouts done, ${run.failures.length} failing cases so far${run.failures[0] ? `, first: ${describeFailure(run.failures[0])}` : ''}${tail ? `; ${tail}` : ''})`)
  }
  const t = run.total
  const perLayout = run.layouts.map(layoutCounts).join('; ')
  if (t.failed > 0 || run.failures.length > 0 || (run.exitCode !== undefined && run.exitCode !== 0)) {
    const w = WRITE_SIDE.reduce((s, k) => s + t.counts[k], 0)
    const r = READ_SIDE.reduce((s, k) => s + t.counts[k], 0)
    const first = firstFailures(run.failures).map(describeFailure)
    return fail(
      `${t.failed} of ${t.cases} O_DIRECT cases from in-page offsets failed (${w} write-side: ${t.counts['write-corrupt']} silent write corruptions, ${t.counts['write-error']} write errors; ${r} read-side: ${t.counts['read-corrupt']} corrupt reads, ${t.counts['read-error']} read errors): ${perLayout}. First: ${first.join('; ')}${run.failures.length > FIRST_FAILURES ? `; ... ${run.failures.length - FIRST_FAILURES} more` : ''}` +
        (run.exitCode !== undefined && run.exitCode !== 1 ? ` (probe exit ${run.exitCode})` : ''),
    )
  }
  if (t.cases !== expectedCases || t.ok !== t.cases || run.layouts.length !== PROBE_LAYOUTS.length) {
    return fail(`the NVMe offset probe ran ${t.ok} of ${expectedCases} cases (${perLayout || 'no layout summaries'})`)
  }
  const unproven = run.layouts.filter((l) => l.phys !== (l.layout === 'contig' ? 'contiguous' : 'scattered')).map((l) => `${l.layout}: phys=${l.phys ?? 'unknown'}`)
  return {
    verdict: 'pass',
    evidence:
      `${t.ok}/${t.cases} O_DIRECT cases intact on ${run.header?.target ?? 'the scratch disk'}: writes from in-page offsets 0..3584, sizes 512..12288, checked on the disk through the page cache and read back with O_DIRECT at another offset; ` +
      `${run.layouts.map((l) => `${l.layout} ${l.ok}/${l.cases}`).join(', ')} (contig: physically contiguous pages, scattered: one segment per page)` +
      `${unproven.length ? `; buffer layout not proven by PFN (${unproven.join(', ')})` : ''}; ${t.elapsedMs} ms`,
  }
}
