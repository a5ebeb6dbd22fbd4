import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, relative} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {FAKE_RECIPE, dirs, makeReportCache} from '../../test/helpers/report-cache.js'
import type {ReportData, ReportRow} from '../report/model.js'
import {nvmeCounts} from '../report/model.js'
import {renderMarkdown} from '../report/render.js'
import {loadFixes} from '../kernel/fixes.js'
import {collectReport} from './report.js'

describe('cvm-image report: the data, from a small cache', () => {
  let tmp: string
  let cacheDir: string
  let outDir: string
  let validateDirs: {patched: string; control: string}
  let data: ReportData
  let row: ReportRow
  const cell = (r: ReportRow, column: string) => [...r.fixes, ...r.features].find((c) => c.column === column)!

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'cvm-report-'))
    cacheDir = join(tmp, 'cache')
    outDir = join(tmp, 'out')
    ;({validateDirs} = await makeReportCache(cacheDir))
    data = await collectReport(dirs, {cacheDir, outDir, recipes: [FAKE_RECIPE, 'debian-12', 'cos-97'], now: new Date('2026-11-03T12:00:00Z')})
    row = data.rows.find((r) => r.recipe === FAKE_RECIPE)!
  })
  afterAll(async () => {
    await rm(tmp, {recursive: true, force: true})
  })

  it('has one row per recipe asked, and a column per fix of kernels/fixes.yaml and per CVM feature', async () => {
    expect(data.rows.map((r) => r.recipe)).toEqual([FAKE_RECIPE, 'debian-12', 'cos-97'])
    expect(data.fixColumns.map((c) => c.id)).toEqual((await loadFixes(dirs.kernels)).map((f) => f.id))
    expect(data.fixColumns.map((c) => c.id)).toEqual(expect.arrayContaining(['min-align-mask', 'sev-swiotlb-size', 'sev-es-guest', 'swiotlb-alloc-align']))
    expect(data.featureColumns.map((c) => c.head)).toEqual(['SEV', 'SEV-ES', 'SNP', 'sev-guest', 'TDX', 'TDX attest', 'unaccepted mem', 'configfs-tsm'])
    expect(row.version).toBe('5.4.59')
    expect(row.note).toBeUndefined()
  })

  it('reads each fix from the trees as kernel check does: added by the series with its patch and upstream ids, missing, not applicable', () => {
    expect(cell(row, 'min-align-mask')).toMatchObject({
      state: 'added-by-series',
      label: 'added by series',
      patches: [{file: '5.4/0100-swiotlb-min-align-mask.patch', upstream: ['36950f2da1ea', '16fc3cef33a0']}],
    })
    expect(cell(row, 'min-align-mask').evidence).toMatch(/include\/linux\/device\.h:2: unsigned long min_align_mask;/)
    expect(cell(row, 'swiotlb-sync-offset')).toMatchObject({state: 'missing', patches: []})
    expect(cell(row, 'sev-swiotlb-size').state).toBe('missing')
    expect(cell(row, 'nvme-min-align-first').state).toBe('not-applicable')
  })

  it('reads each feature from the tree and the built .config: present, missing, needs config', () => {
    expect(cell(row, 'sev').state).toBe('present')
    expect(cell(row, 'sev-es').state).toBe('missing')
    // the tree has the sev-guest driver (a distro backport, say) but not the SNP guest itself
    expect(cell(row, 'sev-guest')).toMatchObject({state: 'needs-config', label: 'needs config'})
    expect(cell(row, 'sev-guest').evidence).toContain('CONFIG_SEV_GUEST=n (needs y or m)')
    expect(cell(row, 'sev-snp').state).toBe('missing')
    expect(cell(row, 'sev-snp').evidence).toMatch(/needs mainline 5\.19 or later, or a backport/)
    for (const f of ['tdx', 'tdx-guest-driver', 'unaccepted-memory', 'tsm-reports']) expect(cell(row, f).state, f).toBe('missing')
  })

  it('puts the last control and patched validations beside the row, with nvme-integrity counts and relative links', () => {
    expect(row.patched).toMatchObject({verdict: 'passed', nvme: {counts: '384/384'}, when: '2026-11-02T10:00:00.000Z', hostKind: 'local', modes: ['emulated']})
    expect(row.control).toMatchObject({verdict: 'failed', nvme: {verdict: 'fail', counts: '170 of 384 failed'}})
    expect(row.patched!.report).toEqual({path: join(validateDirs.patched, 'report.json'), name: 'report.json', href: relative(outDir, join(validateDirs.patched, 'report.json'))})
    expect(row.patched!.report!.href).toMatch(/^\.\.\/cache\/stages\/validate\/a{64}\/report\.json$/)
    expect(row.control!.serialLogs.map((l) => l.href)).toEqual([`../cache/stages/validate/${'b'.repeat(64)}/serial.log`, `../cache/stages/validate/${'b'.repeat(64)}/serial-emulated-disk-boot.log`])
    expect(row.control!.buildRecord.href).toBe(`../cache/builds/${FAKE_RECIPE}.control.json`)
  })

  it('says when a recipe\'s source is not in the cache, or it cannot be checked, rather than dropping its row', () => {
    const d12 = data.rows.find((r) => r.recipe === 'debian-12')!
    expect(d12.note).toBe('source not in the cache: run cvm-image kernel check debian-12 or build it')
    expect([...d12.fixes, ...d12.features].every((c) => c.state === 'unknown')).toBe(true)
    expect(d12.patched).toBeUndefined()
    const cos = data.rows.find((r) => r.recipe === 'cos-97')!
    expect(cos.status).toBe('unsupported')
    expect(cos.note).toMatch(/^unsupported, not checked: recipes\/cos-97\.yaml/)
  })

  it('gives a view per fix: the bug, upstream and stable, and which recipes still need it', () => {
    const mam = data.fixes.find((f) => f.id === 'min-align-mask')!
    expect(mam).toMatchObject({mainline: '5.12', stable: ['5.10.35', '5.11.19'], addedBy: [FAKE_RECIPE], needs: [], unknown: ['debian-12', 'cos-97']})
    expect(mam.bug).toMatch(/^Bug A: with every DMA bounced/)
    expect(mam.commits).toContain('36950f2da1ea')
    expect(data.fixes.find((f) => f.id === 'sev-swiotlb-size')!.needs).toEqual([FAKE_RECIPE])
    expect(data.fixes.find((f) => f.id === 'nvme-min-align-first')!.notApplicable).toEqual([FAKE_RECIPE])
  })

  it('renders the same data as Markdown', () => {
    const md = renderMarkdown(data)
    expect(md).toContain(`| ${FAKE_RECIPE} | 5.4 (5.4.59) | added by series: 5.4/0100-swiotlb-min-align-mask.patch (36950f2da1ea, 16fc3cef33a0) | missing |`)
    expect(md).toContain('**failed** nvme 170 of 384 failed, 2026-11-01 09:30 UTC, local [report.json](../cache/stages/validate/')
    expect(md).toContain('- debian-12: source not in the cache: run cvm-image kernel check debian-12 or build it')
    expect(md).toContain('- still needed by: backport-5.4')
  })
})

describe('nvmeCounts', () => {
  it('reads the counts of the probe\'s evidence', () => {
    expect(nvmeCounts('384/384 O_DIRECT cases intact on /dev/nvme1n1: ...')).toBe('384/384')
    expect(nvmeCounts('221 of 384 O_DIRECT cases from in-page offsets failed (...)')).toBe('221 of 384 failed')
    expect(nvmeCounts('the NVMe offset probe ran 12 of 384 cases (contig 12/192)')).toBe('ran 12 of 384')
    expect(nvmeCounts('could not copy the NVMe offset probe')).toBeUndefined()
  })
})

describe('cvm-image report: trees of the recipe\'s last build, made by other code', () => {
  let tmp: string
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'cvm-report-other-'))
  })
  afterAll(async () => {
    await rm(tmp, {recursive: true, force: true})
  })

  it('reads them when their inputs are the current ones, and says so', async () => {
    const cacheDir = join(tmp, 'same')
    await makeReportCache(cacheDir, {otherCode: {}})
    const [row] = (await collectReport(dirs, {cacheDir, recipes: [FAKE_RECIPE]})).rows
    expect(row.treeNote).toBe("kernel-source and patch: the last build's, same inputs, other code")
    expect(row.note).toBeUndefined()
    expect(row.fixes.find((c) => c.column === 'min-align-mask')!.state).toBe('added-by-series')
  })

  it('does not when the series changed since: the patched tree is not in the cache', async () => {
    const cacheDir = join(tmp, 'changed')
    await makeReportCache(cacheDir, {otherCode: {inputsChanged: true}})
    const [row] = (await collectReport(dirs, {cacheDir, recipes: [FAKE_RECIPE]})).rows
    expect(row.treeNote).toBe("kernel-source: the last build's, same inputs, other code")
    expect(row.note).toBe(`patched tree not in the cache: what the series adds shows as missing; run cvm-image kernel check ${FAKE_RECIPE} or build it`)
    expect(row.fixes.find((c) => c.column === 'min-align-mask')!.state).toBe('missing')
  })
})
