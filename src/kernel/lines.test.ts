import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {projectDirs} from '../recipe/load.js'
import {kernelLines, kernelLinesMarkdown} from './lines.js'

const root = join(import.meta.dirname, '..', '..')

describe('kernel lines', () => {
  it('the README table of what each line carries is the one kernels/ data gives', async () => {
    const table = kernelLinesMarkdown(await kernelLines(projectDirs(root)))
    const readme = readFileSync(join(root, 'README.md'), 'utf8')
    const m = /<!-- kernel-lines:begin -->\n([\s\S]*?)<!-- kernel-lines:end -->/.exec(readme)
    expect(m, 'README.md has no kernel-lines markers').not.toBeNull()
    expect(m![1].trim(), `README.md's table is stale; put this between the markers:\n${table}`).toBe(table)
  })

  it('each proving line carries the fixes its tree lacks, and only build fixes apply to its control', async () => {
    const lines = Object.fromEntries((await kernelLines(projectDirs(root))).map((l) => [l.line, l]))
    for (const line of ['4.18', '5.4', '5.8']) {
      expect(lines[line].recipes).toContain(`backport-${line}`)
      expect(lines[line].upstream, `${line} needs no kernel git`).toEqual([])
      expect(lines[line].fixes).toEqual(expect.arrayContaining(['min-align-mask', 'swiotlb-sync-offset', 'sev-swiotlb-size']))
      expect(lines[line].buildFixes.length).toBeGreaterThan(0)
    }
    // the DMA atomic pools are mainline 5.8: only the older lines carry them
    expect(lines['4.18'].fixes).toContain('dma-atomic-pools')
    expect(lines['5.4'].fixes).toContain('dma-atomic-pools')
    expect(lines['5.8'].fixes).not.toContain('dma-atomic-pools')
    // 61ce339f19fa needs nvme-pci to size I/O from dma_max_mapping_size (5.3+): not 4.18.0-147
    expect(lines['5.4'].fixes).toContain('nvme-min-align-first')
    expect(lines['5.8'].fixes).toContain('nvme-min-align-first')
  })
})
