import {mkdir, writeFile} from 'node:fs/promises'
import {join, resolve} from 'node:path'

import {Flags} from '@oclif/core'

import {collectReport} from '../service/report.js'
import {BaseCommand} from '../cli/base-command.js'
import {optionSet, resolveCacheDir} from '../cli/flags.js'
import type {ReportData} from '../report/model.js'
import {renderHtml, renderMarkdown} from '../report/render.js'

const REPORT_OPTIONS = optionSet(['cache-dir'])

export default class Report extends BaseCommand {
  static summary = 'One page per cache: each recipe\'s guest fixes and CVM features, its last control and patched validations, and a view per fix.'
  static description = `Reads the cache and kernels/ only (no network, nothing built, fetched or written to the cache).
One row per recipe: each fix of kernels/fixes.yaml and each CVM feature (SEV, SEV-ES, SNP, TDX) as
\`kernel check <recipe>\` reads them from the recipe's kernel tree in the cache (present, added by the
series with the patch and its upstream ids, missing, needs config, not applicable), or a note when the
tree is not in the cache; beside it the last control (builds/<id>.control.json) and patched
(builds/<id>.json) validations, with the nvme-integrity counts and links to report.json and the serial
logs. Then, per fix, what the bug does to a guest, where it was fixed, which stable lines took it and
which recipes still need it.

--out <dir> writes report.html (self-contained: inline CSS, no script, opens from a file; its links
are relative to <dir>), report.json and report.md; without it the Markdown is printed (--json: the data).`
  static examples = ['<%= config.bin %> report --out report/', '<%= config.bin %> report --json', '<%= config.bin %> report --recipe debian-12 --recipe backport-5.4']
  static flags = {
    ...REPORT_OPTIONS.flags,
    out: Flags.directory({description: 'write report.html, report.json and report.md into this folder (made if missing)'}),
    recipe: Flags.string({description: 'only this recipe (repeatable; default: every recipe `cvm-image recipes` lists)', multiple: true}),
  }

  async run(): Promise<ReportData> {
    const {flags} = await this.parse(Report)
    const dirs = this.dirs(flags.root)
    const outDir = flags.out ? resolve(flags.out) : undefined
    const data = await collectReport(dirs, {cacheDir: resolveCacheDir(REPORT_OPTIONS.parse(flags)['cache-dir']), outDir, recipes: flags.recipe})
    if (outDir) {
      await mkdir(outDir, {recursive: true})
      await writeFile(join(outDir, 'report.html'), await renderHtml(data, dirs.templates))
      await writeFile(join(outDir, 'report.json'), JSON.stringify(data, null, 2) + '\n')
      await writeFile(join(outDir, 'report.md'), renderMarkdown(data))
      if (!this.jsonEnabled()) this.log(`wrote ${join(outDir, 'report.html')}, report.json and report.md (${data.rows.length} recipes)`)
    } else if (!this.jsonEnabled()) {
      this.log(renderMarkdown(data).trimEnd())
    }
    return data
  }
}
