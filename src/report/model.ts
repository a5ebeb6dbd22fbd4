/**
 * `cvm-image report`: what the page, report.json and report.md show. Data only; src/service/report.ts
 * gathers it from the cache and kernels/, src/report/render.ts renders it.
 */

/** A fix or feature cell: the fix states of `kernel check`, a feature's mapped onto them. */
export type CellState = 'present' | 'added-by-series' | 'missing' | 'needs-config' | 'not-applicable' | 'unknown'

export const CELL_LABELS: Record<CellState, string> = {
  present: 'present',
  'added-by-series': 'added by series',
  missing: 'missing',
  'needs-config': 'needs config',
  'not-applicable': 'not applicable',
  unknown: 'not in cache',
}

/** A series entry that adds a fix or feature: its patch file under kernels/ and the upstream commits it carries. */
export interface CellPatch {
  subject: string
  /** a local patch's path under kernels/ */
  file?: string
  /** an upstream commit entry's id, or the commits a backport carries */
  upstream: string[]
}

export interface ReportCell {
  /** the fix id (kernels/fixes.yaml) or feature name (kernels/features/) */
  column: string
  state: CellState
  label: string
  /** the tree line that shows it, or what is missing or unset */
  evidence: string
  patches: CellPatch[]
}

export interface ReportLink {
  /** the file's absolute path */
  path: string
  /** relative to the report's folder (report.html opens from a file), or a file:// URL without --out */
  href: string
  name: string
}

/** The last validation of one kind of build in the cache. */
export interface ValidationCell {
  kind: 'control' | 'patched'
  verdict: 'passed' | 'failed' | 'skipped'
  modes: string[]
  /** the nvme-integrity check: "384/384" intact, or "170 of 384" failed */
  nvme?: {verdict: string; counts: string; evidence: string}
  /** when the validation finished (else when the build did) */
  when: string
  hostKind: string
  buildRecord: ReportLink
  report?: ReportLink
  serialLogs: ReportLink[]
}

export interface ReportRow {
  recipe: string
  name: string
  status: string
  kernelLine: string
  /** the source tree's version, when it was read */
  version?: string
  /** why cells are unknown or partial: "source not in the cache: ..." */
  note?: string
  /** where the trees read came from, when not from the entries of the current code's keys */
  treeNote?: string
  fixes: ReportCell[]
  features: ReportCell[]
  control?: ValidationCell
  patched?: ValidationCell
}

export interface FixView {
  id: string
  title: string
  /** what the bug does to a guest (fixes.yaml `bug`) */
  bug: string
  commits: string[]
  mainline: string
  stable: string[]
  /** recipes whose tree lacks it and whose series does not add it */
  needs: string[]
  /** recipes whose series adds it */
  addedBy: string[]
  present: string[]
  notApplicable: string[]
  /** recipes whose tree is not in the cache */
  unknown: string[]
}

export interface ReportColumn {
  id: string
  title: string
  /** the short header: the fix id, or SEV / SEV-ES / SNP / TDX */
  head: string
}

export interface ReportData {
  generatedAt: string
  cacheDir: string
  fixColumns: ReportColumn[]
  featureColumns: ReportColumn[]
  rows: ReportRow[]
  fixes: FixView[]
}

/** The CVM features the report shows, as kernels/features/ names them, with their column heads. */
export const REPORT_FEATURES: ReadonlyArray<{name: string; head: string}> = [
  {name: 'sev', head: 'SEV'},
  {name: 'sev-es', head: 'SEV-ES'},
  {name: 'sev-snp', head: 'SNP'},
  {name: 'sev-guest', head: 'sev-guest'},
  {name: 'tdx', head: 'TDX'},
  {name: 'tdx-guest-driver', head: 'TDX attest'},
  {name: 'unaccepted-memory', head: 'unaccepted mem'},
  {name: 'tsm-reports', head: 'configfs-tsm'},
]

/**
 * The counts of the nvme-integrity evidence (src/validate/nvme-probe.ts): "384/384" when every case
 * is intact, "170 of 384" failed, "ran 12 of 384"; undefined when it names none.
 */
export function nvmeCounts(evidence: string): string | undefined {
  const intact = /^(\d+)\/(\d+) O_DIRECT cases intact/.exec(evidence)
  if (intact) return `${intact[1]}/${intact[2]}`
  const failed = /^(\d+) of (\d+) O_DIRECT cases from in-page offsets failed/.exec(evidence)
  if (failed) return `${failed[1]} of ${failed[2]} failed`
  const ran = /ran (\d+) of (\d+) cases/.exec(evidence)
  if (ran) return `ran ${ran[1]} of ${ran[2]}`
  const stopped = /(\d+) failing cases so far/.exec(evidence)
  if (stopped) return `stopped, ${stopped[1]} failing so far`
  return undefined
}
