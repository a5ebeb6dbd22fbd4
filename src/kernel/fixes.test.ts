import {mkdirSync, mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {fixInTree, loadFixes, runProbe, type Fix} from './fixes.js'

const root = join(import.meta.dirname, '..', '..')

function tree(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'fixes-tree-'))
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), {recursive: true})
    writeFileSync(join(dir, path), text)
  }
  return dir
}

const PCI_FIXED = 'static void nvme_reset_work(void)\n{\n\tdma_set_min_align_mask(dev->dev, NVME_CTRL_PAGE_SIZE - 1);\n\tx = min(NVME_MAX_KB_SZ << 1, dma_max_mapping_size(dev->dev) >> 9);\n}\n'
const PCI_LATE = 'static void nvme_reset_work(void)\n{\n\tx = min(NVME_MAX_KB_SZ << 1, dma_max_mapping_size(dev->dev) >> 9);\n\tdma_set_min_align_mask(dev->dev, NVME_CTRL_PAGE_SIZE - 1);\n}\n'
// 6.12 sizes it from dma_opt_mapping_size(), after setting the mask
const PCI_OPT = 'static int nvme_probe(void)\n{\n\tdma_set_min_align_mask(&pdev->dev, NVME_CTRL_PAGE_SIZE - 1);\n\tx = min_t(u32, NVME_MAX_KB_SZ << 1, dma_opt_mapping_size(&pdev->dev) >> 9);\n}\n'
const PCI_OLD = 'static void nvme_reset_work(void)\n{\n\tdev->ctrl.max_hw_sectors = NVME_MAX_KB_SZ << 1;\n}\n'

describe('guest fixes read from a tree', () => {
  it('kernels/fixes.yaml is valid: every guest fix with its commits', async () => {
    const fixes = await loadFixes(join(root, 'kernels'))
    expect(fixes.map((f) => f.id)).toEqual(['min-align-mask', 'swiotlb-sync-offset', 'nvme-min-align-first', 'sev-swiotlb-size', 'dma-atomic-pools', 'sev-es-guest', 'swiotlb-alloc-align', 'iommu-untrusted-max-mapping'])
    expect(fixes.find((f) => f.id === 'min-align-mask')!.commits).toHaveLength(9)
    // the SEV-ES guest: the merges of x86_seves_for_v5.10 and its two follow-up tags
    expect(fixes.find((f) => f.id === 'sev-es-guest')!.commits).toEqual(['da9803dfd395', 'c51ae1247262', '43c834186c18'])
    expect(fixes.find((f) => f.id === 'dma-atomic-pools')!.commits).toContain('82fef0ad811f')
  })

  it('a probe reads code lines, any of several files, and an order between two lines', async () => {
    const t = tree({'a.c': '/*\n * calls dma_set_min_align_mask() first\n */\nint x;\n', 'b.h': 'struct p {\n\tunsigned int min_align_mask;\n};\n'})
    // a comment that names a call is not the call
    expect(await runProbe(t, {file: 'a.c', matches: 'dma_set_min_align_mask\\('})).toEqual({holds: false, evidence: 'no line of a.c matches /dma_set_min_align_mask\\(/'})
    expect(await runProbe(t, {file: ['missing.h', 'b.h'], matches: 'min_align_mask;'})).toEqual({holds: true, evidence: 'b.h:2: unsigned int min_align_mask;'})
    expect(await runProbe(t, {file: ['x.c', 'y.c']})).toEqual({holds: false, evidence: 'no x.c or y.c'})
    expect(await runProbe(t, {file: 'a.c'})).toEqual({holds: true, evidence: 'a.c exists'})
  })

  it('61ce339f19fa: present when the mask is set first (sized by dma_max_mapping_size or, from 6.12, dma_opt_mapping_size), missing when after, not applicable without either', async () => {
    const fix = (await loadFixes(join(root, 'kernels'))).find((f) => f.id === 'nvme-min-align-first') as Fix
    const pci = 'drivers/nvme/host/pci.c'
    expect((await fixInTree(tree({[pci]: PCI_FIXED}), fix)).state).toBe('present')
    const late = await fixInTree(tree({[pci]: PCI_LATE}), fix)
    expect(late).toMatchObject({state: 'missing', evidence: [`${pci}:3 matches /dma_(max|opt)_mapping_size\\(/ before ${pci}:4 matches /dma_set_min_align_mask\\(/`]})
    expect((await fixInTree(tree({[pci]: PCI_OPT}), fix)).state).toBe('present')
    expect(await fixInTree(tree({[pci]: PCI_OLD}), fix)).toMatchObject({state: 'not-applicable', evidence: [expect.stringMatching(/^the tree lacks what this fix changes/)]})
  })

  it('5f89468e2f06 (swiotlb-sync-offset): read in its 5.12 form and in the tlb_offset form of 6.9 and later (6.12)', async () => {
    const fix = (await loadFixes(join(root, 'kernels'))).find((f) => f.id === 'swiotlb-sync-offset') as Fix
    const dma = 'kernel/dma/swiotlb.c'
    const form512 = 'static void swiotlb_bounce(void)\n{\n\tint orig_addr_offset = swiotlb_align_offset(dev, orig_addr);\n}\n'
    const form612 = 'static void swiotlb_bounce(void)\n{\n\ttlb_offset = (tlb_addr & (IO_TLB_SIZE - 1)) -\n\t\t     swiotlb_align_offset(dev, 0, orig_addr);\n}\n'
    const before = 'static void swiotlb_bounce(void)\n{\n\tphys_addr_t orig_addr = mem->slots[index].orig_addr;\n}\n'
    expect((await fixInTree(tree({[dma]: form512}), fix)).state).toBe('present')
    expect((await fixInTree(tree({[dma]: form612}), fix)).state).toBe('present')
    expect((await fixInTree(tree({[dma]: before}), fix)).state).toBe('missing')
  })
})
