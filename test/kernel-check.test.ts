import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

import {describe, expect, it, vi} from 'vitest'

import KernelCheck from '../src/commands/kernel/check.js'
import type {KernelCheckResult} from '../src/kernel/check.js'
import {canBeSnpGuest} from '../src/kernel/guest-support.js'
import {projectDirs, RecipeStore} from '../src/recipe/load.js'
import {run} from '../src/util/exec.js'
import {oldKernelsArchive, repoRoot} from './helpers/paths.js'
import {kernelProject, runKernelProject} from './kernel-fixtures.js'

const archive = oldKernelsArchive()

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


/** The CVM pieces of SNP and TDX, as kernels/features names them. */
const SNP_TDX = ['sev-snp', 'sev-guest', 'tdx', 'tdx-guest-driver', 'unaccepted-memory', 'tsm-reports'] as const
const statusOf = (r: KernelCheckResult) => Object.fromEntries(r.features.map((f) => [f.feature, f.status]))

describe('kernel check of SNP and TDX on real trees', () => {
  it('6.1 (linux-source-6.1): debian-12\'s profile configures the SNP guest, sev-guest and the TDX guest (olddefconfig, every option proven), and the build records what 6.1 lacks', async () => {
    const features = new RecipeStore(projectDirs(repoRoot)).load('debian-12').recipe.kernel.config.features
    expect(features).toEqual(expect.arrayContaining(['sev-snp', 'sev-guest', 'tdx']))
    const dirs = await kernelProject({features})
    const built = await runKernelProject(dirs, 'configure')
    const configure = built.results.configure!
    const config = readFileSync(join(configure.dir, 'config'), 'utf8')
    expect(config).toMatch(/^CONFIG_SEV_GUEST=m$/m)
    expect(config).toMatch(/^CONFIG_INTEL_TDX_GUEST=y$/m)
    expect(config).toMatch(/^CONFIG_AMD_MEM_ENCRYPT=y$/m)
    expect(configure.meta.verified).toEqual(expect.arrayContaining(['CONFIG_SEV_GUEST', 'CONFIG_INTEL_TDX_GUEST', 'CONFIG_KVM_GUEST']))
    // what configure records (and compile copies into kernel.json): kernel check of the tree and this .config
    const recorded = Object.fromEntries(configure.meta.support!.features.map((f) => [f.feature, f.status]))
    expect(recorded).toMatchObject({'sev-snp': 'supported', 'sev-guest': 'supported', tdx: 'supported', 'sev-live-migration': 'supported', 'tdx-guest-driver': 'needs-backport', 'unaccepted-memory': 'needs-backport', 'tsm-reports': 'needs-backport'})
    expect(canBeSnpGuest(configure.meta.support).ok).toBe(true)

    // kernel check on the source tree: each piece read from the code, the missing ones with the release they need
    const tree = join(built.results['kernel-source']!.dir, 'tree')
    const {result, stdout} = await check(tree, ...SNP_TDX.flatMap((f) => ['--feature', f]))
    expect(result.version).toMatch(/^6\.1\./)
    expect(statusOf(result)).toEqual({'sev-snp': 'supported', 'sev-guest': 'supported', tdx: 'supported', 'tdx-guest-driver': 'needs-backport', 'unaccepted-memory': 'needs-backport', 'tsm-reports': 'needs-backport'})
    expect(result.features.find((f) => f.feature === 'sev-snp')!.reason).toMatch(/arch\/x86\/kernel\/sev\.c:\d+: bool __head snp_init\(/)
    expect(stdout).toMatch(/tdx-guest-driver\s+needs-backport\s+the tree lacks it: no drivers\/virt\/coco\/tdx-guest\/Kconfig; needs mainline 6\.2 or later, or a backport/)
    expect(stdout).toMatch(/unaccepted-memory\s+needs-backport\s+the tree lacks it: no line of drivers\/firmware\/efi\/Kconfig matches .*needs mainline 6\.5/)
    expect(stdout).toMatch(/tsm-reports\s+needs-backport\s+the tree lacks it: .*needs mainline 6\.7/)
  }, 20 * 60_000)

  it('4.18 (RHEL 8.1), 5.4.59 and 5.8.18 (../shared/kernels): every SNP and TDX piece needs a later kernel or a backport, and their profiles ask for none', async () => {
    expect(existsSync(archive), `${archive} missing: CI has ../shared beside the clone; set CVM_TEST_OLD_KERNELS elsewhere`).toBe(true)
    const dir = mkdtempSync(join(tmpdir(), 'kcheck-old-'))
    try {
      // only the files the features read: the whole stream is decompressed (about 10 s), little is written
      await run('sh', ['-c', `zstd -dc --long=31 "$1" | tar -x --wildcards --no-wildcards-match-slash -C "$2" 'linux-*/Makefile' 'linux-*/arch/x86/Kconfig' 'linux-*/arch/x86/kernel/*.c' 'linux-*/drivers/firmware/efi/Kconfig' 'linux-*/drivers/virt/Kconfig'`, 'sh', archive, dir])
      for (const top of ['linux-4.18.0-147.5.1.el8', 'linux-5.4.59', 'linux-5.8.18']) {
        const {result} = await check(join(dir, top), ...SNP_TDX.flatMap((f) => ['--feature', f]), '--feature', 'sev-live-migration', '--json')
        expect(statusOf(result), top).toEqual(Object.fromEntries([...SNP_TDX, 'sev-live-migration'].map((f) => [f, 'needs-backport'])))
        for (const f of result.features) expect(f.reason, `${top} ${f.feature}`).toMatch(/^the tree lacks it: .*; needs mainline \d+\.\d+ or later, or a backport/)
      }
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
    // the old lines' recipes ask for no SNP or TDX feature: their profiles are as before
    const store = new RecipeStore(projectDirs(repoRoot))
    for (const id of ['backport-4.18', 'backport-5.4', 'backport-5.8']) {
      const features = store.load(id).recipe.kernel.config.features
      expect(features.filter((f) => [...SNP_TDX, 'sev-live-migration'].includes(f)), id).toEqual([])
    }
  }, 5 * 60_000)
})
