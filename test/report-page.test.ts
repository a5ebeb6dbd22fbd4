import {execFile} from 'node:child_process'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'
import {promisify} from 'node:util'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {ReportData} from '../src/report/model.js'
import {cli} from './helpers/cli.js'
import {FAKE_RECIPE, makeReportCache} from './helpers/report-cache.js'

const exec = promisify(execFile)

/** Headless Chromium (Debian's chromium; `cvm-image doctor` lists it for the tests). As root it needs --no-sandbox. */
async function chromium(args: string[]): Promise<string> {
  const sandbox = process.getuid?.() === 0 ? ['--no-sandbox'] : []
  const r = await exec('chromium', ['--headless', ...sandbox, '--disable-gpu', '--no-first-run', '--hide-scrollbars', `--user-data-dir=${join(tmp, 'chromium-profile')}`, ...args], {timeout: 90_000, maxBuffer: 64 * 1024 * 1024})
  return r.stdout
}

let tmp: string

describe('cvm-image report: the page, loaded in headless Chromium', () => {
  let outDir: string
  let cacheDir: string
  let html: string
  let dom: string
  let validateDirs: {patched: string; control: string}

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'cvm-report-page-'))
    cacheDir = join(tmp, 'cache')
    outDir = join(tmp, 'out')
    ;({validateDirs} = await makeReportCache(cacheDir))
    const run = await cli(['report', '--cache-dir', cacheDir, '--out', outDir, '--recipe', FAKE_RECIPE, '--recipe', 'debian-12'])
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    expect(run.stdout).toContain('report.html, report.json and report.md (2 recipes)')
    html = await readFile(join(outDir, 'report.html'), 'utf8')
    dom = await chromium(['--dump-dom', pathToFileURL(join(outDir, 'report.html')).href])
  }, 180_000)
  afterAll(async () => {
    await rm(tmp, {recursive: true, force: true})
  })

  it('is one self-contained file: inline CSS, no script, nothing fetched, values escaped', () => {
    expect(html).toMatch(/^<!DOCTYPE html>/)
    expect(html).not.toMatch(/<script|<link |<img |@import|url\(|@font-face|src=/i)
    expect(html).not.toMatch(/href="https?:/)
    // the control's nvme evidence holds "<offset 512>": an attribute value, escaped, never markup
    expect(html).toContain('First: &lt;offset 512&gt;')
    expect(html).not.toContain('<offset 512>')
  })

  it('shows one row per recipe, each cell\'s state, and links relative to the page', async () => {
    const rows = [...dom.matchAll(/<tr id="recipe-([^"]+)" data-recipe="[^"]+">/g)].map((m) => m[1])
    expect(rows).toEqual([FAKE_RECIPE, 'debian-12'])
    const row = dom.slice(dom.indexOf(`<tr id="recipe-${FAKE_RECIPE}"`), dom.indexOf('<tr id="recipe-debian-12"'))
    const td = (column: string) => new RegExp(`<td class="cell s-([a-z-]+)" data-column="${column}"[^>]*>(.*?)</td>`).exec(row)
    expect(td('min-align-mask')?.[1]).toBe('added-by-series')
    expect(td('min-align-mask')?.[2]).toBe('added by series<div class="patch">5.4/0100-swiotlb-min-align-mask.patch <span class="ids">36950f2da1ea, 16fc3cef33a0</span></div>')
    expect(td('sev-swiotlb-size')?.slice(1)).toEqual(['missing', 'missing'])
    expect(td('sev-snp')?.slice(1)).toEqual(['missing', 'missing']) // a 5.4.59 tree has no SNP guest code
    expect(td('nvme-min-align-first')?.slice(1)).toEqual(['not-applicable', 'not applicable'])
    const control = /<td class="val v-failed" data-kind="control"><strong>failed<\/strong> · nvme-integrity <span class="nvme"[^>]*>170 of 384 failed<\/span>/.exec(row)
    expect(control).not.toBeNull()
    expect(row).toContain(`<a href="../cache/stages/validate/${validateDirs.patched.split('/').at(-1)}/report.json">report.json</a>`)
    expect(row).toContain(`<a href="../cache/stages/validate/${validateDirs.control.split('/').at(-1)}/serial.log">serial.log</a>`)
    const d12 = dom.slice(dom.indexOf('<tr id="recipe-debian-12"'))
    // one wide cell across every fix and feature column
    const data = JSON.parse(await readFile(join(outDir, 'report.json'), 'utf8')) as ReportData
    const columns = data.fixColumns.length + data.featureColumns.length
    expect(d12).toMatch(new RegExp(`<td class="cell s-unknown" colspan="${columns}" data-column="all">source not in the cache: run cvm-image kernel check debian-12 or build it</td>`))
    expect(d12).toContain('no patched build in the cache')
  })

  it('has a section per fix with the recipes that still need it, linked from its column head', () => {
    expect(dom).toContain('<th title="SEV guests size their SWIOTLB bounce buffer from memory (~6%, 64 MiB..1 GiB)"><a href="#fix-sev-swiotlb-size">sev-swiotlb-size</a></th>')
    const section = dom.slice(dom.indexOf('<section id="fix-sev-swiotlb-size"'))
    expect(section).toMatch(/<dt>still needed by<\/dt><dd class="needs">backport-5.4<\/dd>/)
  })

  it('gives the same data as report.json and --json', async () => {
    const file = JSON.parse(await readFile(join(outDir, 'report.json'), 'utf8')) as ReportData
    const run = await cli(['report', '--cache-dir', cacheDir, '--recipe', FAKE_RECIPE, '--recipe', 'debian-12', '--json'])
    expect(run.code).toBe(0)
    const printed = JSON.parse(run.stdout) as ReportData
    // without --out the links are file:// URLs, and the time differs
    expect(printed.rows.map((r) => r.fixes)).toEqual(file.rows.map((r) => r.fixes))
    expect(printed.rows[0].patched!.report!.href).toBe(pathToFileURL(join(validateDirs.patched, 'report.json')).href)
    expect(await readFile(join(outDir, 'report.md'), 'utf8')).toContain('| backport-5.4 | 5.4 (5.4.59) | added by series')
  })

  it('takes a screenshot', async () => {
    const png = process.env.CVM_REPORT_SCREENSHOT ?? join(tmp, 'report.png')
    await chromium([`--screenshot=${png}`, '--window-size=1700,1000', pathToFileURL(join(outDir, 'report.html')).href])
    const bytes = await readFile(png)
    expect(bytes.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a')
    expect(bytes.length).toBeGreaterThan(20_000)
  }, 120_000)
})
