import {mkdirSync, mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

import {describe, expect, it, vi} from 'vitest'

import KernelCheck from '../src/commands/kernel/check.js'
import type {KernelCheckResult} from '../src/kernel/check.js'
import {repoRoot} from './helpers/paths.js'

async function check(...argv: string[]): Promise<{result: KernelCheckResult; stdout: string}> {
  let stdout = ''
  // what the command prints, as people (log) or pipelines (logJson) see it
  const log = vi.spyOn(KernelCheck.prototype, 'log').mockImplementation((text?: string) => {
    stdout += `${text ?? ''}\n`
  })
  // logJson is protected in oclif's Command: spied on through a type that names it
  const logJson = vi.spyOn(KernelCheck.prototype as unknown as {logJson(json: unknown): void}, 'logJson').mockImplementation((json: unknown) => {
    stdout += JSON.stringify(json)
  })
  try {
    const result = (await KernelCheck.run([...argv, '--root', repoRoot], join(repoRoot, 'package.json'))) as KernelCheckResult
    return {result, stdout}
  } finally {
    log.mockRestore()
    logJson.mockRestore()
  }
}

describe('cvm-image kernel check', () => {
  it('judges a version: Ubuntu 18.04 5.4.0 lacks SEV-ES and the min_align_mask fixes, bullseye 5.10.223 has both', async () => {
    const old = await check('5.4.0', '--json')
    const status = (r: KernelCheckResult) => Object.fromEntries(r.features.map((f) => [f.feature, f.status]))
    expect(status(old.result)).toMatchObject({sev: 'supported', 'sev-es': 'needs-backport', swiotlb: 'needs-backport', 'sev-snp': 'needs-backport'})
    expect(JSON.parse(old.stdout)).toEqual(old.result)
    // and says where SEV-ES can come from: the 5.8 line with kernels/5.8's series, or 5.10+
    expect(old.result.features.find((f) => f.feature === 'sev-es')!.reason).toMatch(/predates mainline 5\.10; kernels\/5\.8 carries it .*the 5\.8 line with that series or a 5\.10\+ line/)
    const bullseye = await check('5.10.223')
    expect(status(bullseye.result)).toMatchObject({sev: 'supported', 'sev-es': 'supported', swiotlb: 'supported', tdx: 'needs-backport'})
    expect(bullseye.stdout).toMatch(/swiotlb\s+supported\s+in stable 5\.10\.35/)
  })

  it('judges a .config: options missing from it are named', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kcheck-'))
    const file = join(dir, 'config')
    writeFileSync(file, '#\n# Linux/x86 6.1.192 Kernel Configuration\n#\nCONFIG_AMD_MEM_ENCRYPT=y\nCONFIG_CPU_SUP_AMD=y\n# CONFIG_KEXEC_FILE is not set\nCONFIG_KEXEC=y\n')
    const {result} = await check(file, '--feature', 'sev', '--feature', 'sev-es', '--feature', 'kexec', '--json')
    expect(result.version).toBe('6.1.192')
    expect(result.features.map((f) => [f.feature, f.status])).toEqual([['sev', 'supported'], ['sev-es', 'supported'], ['kexec', 'needs-config']])
    expect(result.features[2].missing).toEqual([{option: 'CONFIG_KEXEC_FILE', want: ['y'], have: 'n'}])
  })

  it('judges a source tree by its content, not its version: a 4.18 tree with a distro backport of min_align_mask has it', async () => {
    const tree = mkdtempSync(join(tmpdir(), 'kcheck-tree-'))
    const put = (path: string, text: string) => {
      mkdirSync(dirname(join(tree, path)), {recursive: true})
      writeFileSync(join(tree, path), text)
    }
    put('Makefile', 'VERSION = 4\nPATCHLEVEL = 18\nSUBLEVEL = 0\n')
    put('arch/x86/Kconfig', 'config AMD_MEM_ENCRYPT\n\tbool "AMD Secure Memory Encryption (SME) support"\n')
    put('include/linux/device.h', 'struct device_dma_parameters {\n\tunsigned int max_segment_size;\n\tunsigned int min_align_mask;\n};\n')
    put('kernel/dma/swiotlb.c', 'static unsigned int swiotlb_align_offset(struct device *dev, u64 addr)\n{\n\treturn addr & dma_get_min_align_mask(dev) & (IO_TLB_SIZE - 1);\n}\n')
    put('drivers/nvme/host/pci.c', '\tdma_set_min_align_mask(dev->dev, NVME_CTRL_PAGE_SIZE - 1);\n')
    const {result, stdout} = await check(tree, '--json')
    expect(result).toMatchObject({kind: 'tree', version: '4.18.0'})
    const fixes = Object.fromEntries(result.fixes!.map((f) => [f.fix, f.status]))
    // 4.18 predates mainline 5.12, yet the tree has the code: present
    // its swiotlb.c has no allocation alignment and it has no dma-iommu.c: the 2024 alignment fixes do not apply
    expect(fixes).toEqual({'min-align-mask': 'present', 'swiotlb-sync-offset': 'missing', 'nvme-min-align-first': 'not-applicable', 'sev-swiotlb-size': 'missing', 'dma-atomic-pools': 'missing', 'sev-es-guest': 'missing', 'swiotlb-alloc-align': 'not-applicable', 'iommu-untrusted-max-mapping': 'not-applicable'})
    const features = Object.fromEntries(result.features.map((f) => [f.feature, f.status]))
    expect(features).toMatchObject({sev: 'supported', swiotlb: 'supported', 'sev-es': 'needs-backport'})
    expect(JSON.parse(stdout)).toEqual(result)
  })
})

