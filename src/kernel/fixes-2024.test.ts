import {mkdirSync, mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {fixInTree, loadFixes, type Fix} from './fixes.js'

// The 2024 SWIOTLB alignment fixes of kernels/fixes.yaml, read by the real probes from small files
// written here: the few lines each probe looks at, in the fixed form, the unfixed form (6.1 before
// the fix) and the form of lines older than the code the fix changes (4.18 to 5.10).

const root = join(import.meta.dirname, '..', '..')
const SWIOTLB = 'kernel/dma/swiotlb.c'
const DMA_IOMMU = 'drivers/iommu/dma-iommu.c'

function tree(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'fixes-2024-'))
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), {recursive: true})
    writeFileSync(join(dir, path), text)
  }
  return dir
}

async function fix(id: string): Promise<Fix> {
  return (await loadFixes(join(root, 'kernels'))).find((f) => f.id === id)!
}

const lines = (...l: string[]) => `${l.join('\n')}\n`

// the slot search of 6.1 (swiotlb_do_find_slots), with and without 51b30ecb73b4
const FIND_SLOTS_HEAD = ['static int find_slots(struct device *dev, phys_addr_t orig_addr,', '\t\tsize_t alloc_size, unsigned int alloc_align_mask)', '{']
const SWIOTLB_FIXED = lines(
  ...FIND_SLOTS_HEAD,
  '\tunsigned int iotlb_align_mask = dma_get_min_align_mask(dev);',
  '\talloc_align_mask |= (IO_TLB_SIZE - 1);',
  '\tiotlb_align_mask &= ~alloc_align_mask;',
  '\tstride = (iotlb_align_mask >> IO_TLB_SHIFT) + 1;',
  '}',
)
const SWIOTLB_UNFIXED = lines(
  ...FIND_SLOTS_HEAD,
  '\tunsigned int iotlb_align_mask =',
  '\t\tdma_get_min_align_mask(dev) & ~(IO_TLB_SIZE - 1);',
  // a comment that shows the fixed line is not the fixed line
  '\t/*',
  '\t * later: iotlb_align_mask &= ~alloc_align_mask;',
  '\t */',
  '\tstride = (iotlb_align_mask >> IO_TLB_SHIFT) + 1;',
  '}',
)
// 5.8 and older: no allocation alignment in the slot search
const SWIOTLB_OLD = lines(
  'phys_addr_t swiotlb_tbl_map_single(struct device *hwdev, dma_addr_t tbl_dma_addr,',
  '\t\tphys_addr_t orig_addr, size_t mapping_size, size_t alloc_size,',
  '\t\tenum dma_data_direction dir, unsigned long attrs)',
  '{',
  '\tunsigned long mask = dma_get_seg_boundary(hwdev);',
  '}',
)

// dma-iommu of 6.1, with and without afc5aa46ed56
const MAP_PAGE = ['\tif (dev_use_swiotlb(dev) && iova_offset(iovad, phys | size)) {', '\t\tphys = swiotlb_tbl_map_single(dev, phys, size, aligned_size,', '\t\t\t\tiova_mask(iovad), dir, attrs);', '\t}']
const IOMMU_FIXED = lines(
  ...MAP_PAGE,
  'static size_t iommu_dma_max_mapping_size(struct device *dev)',
  '{',
  '\tif (dev_is_untrusted(dev))',
  '\t\treturn swiotlb_max_mapping_size(dev);',
  '\treturn SIZE_MAX;',
  '}',
  '\t.max_mapping_size = iommu_dma_max_mapping_size,',
)
const IOMMU_UNFIXED = lines(...MAP_PAGE, 'static const struct dma_map_ops iommu_dma_ops = {', '\t.opt_mapping_size = iommu_dma_opt_mapping_size,', '};')
// 5.10 and older: dma-iommu maps through the IOMMU only, nothing is bounced
const IOMMU_OLD = lines('static dma_addr_t iommu_dma_map_page(struct device *dev, struct page *page,', '{', '\tdma_addr = __iommu_dma_map(dev, phys, size, prot);', '}')

describe('the 2024 SWIOTLB alignment fixes read from a tree', () => {
  it('both are in kernels/fixes.yaml with their commit, mainline 6.9 and 6.1.84', async () => {
    const a = await fix('swiotlb-alloc-align')
    const b = await fix('iommu-untrusted-max-mapping')
    expect([a.commits, a.mainline, a.stable]).toEqual([['51b30ecb73b4'], '6.9', ['6.1.84']])
    expect([b.commits, b.mainline, b.stable]).toEqual([['afc5aa46ed56'], '6.9', ['6.1.84']])
  })

  it('51b30ecb73b4: present when the min_align_mask drops the allocation alignment, missing before, not applicable without alloc_align_mask', async () => {
    const f = await fix('swiotlb-alloc-align')
    expect(await fixInTree(tree({[SWIOTLB]: SWIOTLB_FIXED}), f)).toMatchObject({state: 'present', evidence: [`${SWIOTLB}:6: iotlb_align_mask &= ~alloc_align_mask;`]})
    expect(await fixInTree(tree({[SWIOTLB]: SWIOTLB_UNFIXED}), f)).toMatchObject({state: 'missing', evidence: [expect.stringMatching(/^no line of kernel\/dma\/swiotlb\.c matches/)]})
    expect(await fixInTree(tree({[SWIOTLB]: SWIOTLB_OLD}), f)).toMatchObject({state: 'not-applicable', evidence: [expect.stringMatching(/^the tree lacks what this fix changes: no line of kernel\/dma\/swiotlb\.c matches \/alloc_align_mask\//)]})
  })

  it('afc5aa46ed56: present when dma-iommu returns SWIOTLB\'s limit, missing before, not applicable where dma-iommu does not bounce', async () => {
    const f = await fix('iommu-untrusted-max-mapping')
    expect(await fixInTree(tree({[DMA_IOMMU]: IOMMU_FIXED}), f)).toMatchObject({state: 'present', evidence: [`${DMA_IOMMU}:8: return swiotlb_max_mapping_size(dev);`]})
    expect(await fixInTree(tree({[DMA_IOMMU]: IOMMU_UNFIXED}), f)).toMatchObject({state: 'missing'})
    expect(await fixInTree(tree({[DMA_IOMMU]: IOMMU_OLD}), f)).toMatchObject({state: 'not-applicable'})
    // a tree without dma-iommu at all
    expect(await fixInTree(tree({[SWIOTLB]: SWIOTLB_OLD}), f)).toMatchObject({state: 'not-applicable', evidence: [`the tree lacks what this fix changes: no ${DMA_IOMMU}`]})
  })
})
