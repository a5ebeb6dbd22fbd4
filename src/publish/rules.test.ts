import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {checkBuilt} from '../kernel/check.js'
import {canBeSnpGuest, RECORDED_FEATURES, toGuestSupport, type GuestSupport} from '../kernel/guest-support.js'

import type {BuildRecord} from '../pipeline/build-record.js'
import {guestOsFeatures} from './guest-os-features.js'
import {kernelCanBeSnpGuest, parseKernelConfig} from './kernel-config.js'
import {describeTarget, parseTarget} from './target.js'
import {gateOnValidation, type ValidationSummary} from './validation-gate.js'
import {releaseVersion} from './version.js'
import {repoRoot} from '../../test/helpers/paths.js'

const passedEmulated: ValidationSummary = {status: 'passed', allowedUnvalidated: false, modes: ['emulated'], checks: [{mode: 'emulated', name: 'boot', verdict: 'pass'}]}
const types = (...a: Parameters<typeof guestOsFeatures>) => guestOsFeatures(...a).map((f) => f.type)

describe('guestOsFeatures', () => {
  const sevConfig = parseKernelConfig('CONFIG_AMD_MEM_ENCRYPT=y\nCONFIG_SEV_GUEST=m\n# CONFIG_GVE is not set\n')

  it('claims UEFI_COMPATIBLE always, and nothing else without a kernel config', () => {
    expect(types({recipeFeatures: ['sev'], validation: passedEmulated})).toEqual(['UEFI_COMPATIBLE'])
  })

  it('claims SEV_CAPABLE for AMD_MEM_ENCRYPT=y with the sev feature requested, or with an SEV validation that passed', () => {
    expect(types({config: sevConfig, recipeFeatures: ['sev'], validation: passedEmulated})).toEqual(['UEFI_COMPATIBLE', 'SEV_CAPABLE'])
    expect(types({config: sevConfig, recipeFeatures: [], validation: passedEmulated})).toEqual(['UEFI_COMPATIBLE'])
    const underSev: ValidationSummary = {...passedEmulated, modes: ['sev'], checks: [{mode: 'sev', name: 'memory-encryption', verdict: 'pass'}]}
    const f = guestOsFeatures({config: sevConfig, recipeFeatures: [], validation: underSev})
    expect(f.map((x) => x.type)).toEqual(['UEFI_COMPATIBLE', 'SEV_CAPABLE'])
    expect(f[1].reason).toMatch(/validation passed under sev/)
  })

  it('never claims SEV_CAPABLE when the kernel lacks AMD_MEM_ENCRYPT, whatever the recipe says', () => {
    expect(types({config: parseKernelConfig('CONFIG_AMD_MEM_ENCRYPT=n\n'), recipeFeatures: ['sev', 'sev-es'], validation: passedEmulated})).toEqual(['UEFI_COMPATIBLE'])
    expect(types({config: parseKernelConfig('# CONFIG_AMD_MEM_ENCRYPT is not set\n'), recipeFeatures: ['sev'], validation: passedEmulated})).toEqual(['UEFI_COMPATIBLE'])
  })

  it('claims GVNIC only with the GVE driver built (gve.ko or built in), and VIRTIO_SCSI_MULTIQUEUE and IDPF from their drivers in the config', () => {
    const config = parseKernelConfig('CONFIG_GVE=m\nCONFIG_SCSI_VIRTIO=y\nCONFIG_IDPF=m\n')
    expect(types({config, recipeFeatures: [], gve: 'module', validation: passedEmulated})).toEqual(['UEFI_COMPATIBLE', 'GVNIC', 'VIRTIO_SCSI_MULTIQUEUE', 'IDPF'])
    expect(types({config, recipeFeatures: [], gve: 'absent', validation: passedEmulated})).toEqual(['UEFI_COMPATIBLE', 'VIRTIO_SCSI_MULTIQUEUE', 'IDPF'])
    expect(types({config, recipeFeatures: [], validation: passedEmulated})).not.toContain('GVNIC')
  })
})

/**
 * A kernel as the build records it: a source tree with (or without) each CVM piece, judged with a
 * .config by the same checkBuilt the configure stage runs, over the repository's kernels/features.
 */
const PIECES = {
  snp: ['arch/x86/kernel/sev.c', 'bool __head snp_init(struct boot_params *bp)\n{\n'],
  sevGuest: ['drivers/virt/coco/sev-guest/Kconfig', 'config SEV_GUEST\n\ttristate "AMD SEV Guest driver"\n'],
  tdx: ['arch/x86/coco/tdx/tdx.c', '// tdx guest\n'],
  migration: ['arch/x86/kernel/kvm.c', '\t\twrmsrl(MSR_KVM_MIGRATION_CONTROL, KVM_MIGRATION_READY);\n'],
} as const
const FULL_CONFIG = ['CONFIG_AMD_MEM_ENCRYPT=y', 'CONFIG_CPU_SUP_AMD=y', 'CONFIG_SEV_GUEST=m', 'CONFIG_INTEL_TDX_GUEST=y', 'CONFIG_KVM_GUEST=y', 'CONFIG_GVE=m', 'CONFIG_NET_VENDOR_GOOGLE=y']

async function builtKernel(o: {version?: string; without?: (keyof typeof PIECES)[]; unset?: string[]} = {}): Promise<{config: ReturnType<typeof parseKernelConfig>; support: GuestSupport}> {
  const tree = mkdtempSync(join(tmpdir(), 'gof-tree-'))
  const put = (path: string, text: string) => {
    mkdirSync(dirname(join(tree, path)), {recursive: true})
    writeFileSync(join(tree, path), text)
  }
  const [major, minor, patch] = (o.version ?? '6.1.176').split('.')
  put('Makefile', `VERSION = ${major}\nPATCHLEVEL = ${minor}\nSUBLEVEL = ${patch}\n`)
  put('arch/x86/Kconfig', `config AMD_MEM_ENCRYPT\n\tbool "AMD SME"\n${o.without?.includes('tdx') ? '' : 'config INTEL_TDX_GUEST\n\tbool "TDX"\n'}`)
  for (const [name, [path, text]] of Object.entries(PIECES)) if (!o.without?.includes(name as keyof typeof PIECES)) put(path, text)
  const text = `#\n# Linux/x86 ${o.version ?? '6.1.176'} Kernel Configuration\n#\n${FULL_CONFIG.map((l) => (o.unset?.some((u) => l.startsWith(`${u}=`)) ? `# ${l.split('=')[0]} is not set` : l)).join('\n')}\n`
  try {
    return {config: parseKernelConfig(text), support: toGuestSupport(await checkBuilt(join(repoRoot, 'kernels'), tree, text, RECORDED_FEATURES))}
  } finally {
    rmSync(tree, {recursive: true, force: true})
  }
}

describe('guestOsFeatures follow the recorded kernel check (SNP, TDX, SEV live migration)', () => {
  const flags = async (o: Parameters<typeof builtKernel>[0]) => {
    const k = await builtKernel(o)
    return types({...k, recipeFeatures: ['sev'], gve: 'module', validation: passedEmulated})
  }

  it('a 6.1 kernel with every piece and the options set gets every flag', async () => {
    expect(await flags({})).toEqual(['UEFI_COMPATIBLE', 'SEV_CAPABLE', 'SEV_SNP_CAPABLE', 'SEV_LIVE_MIGRATABLE_V2', 'TDX_CAPABLE', 'GVNIC'])
  })

  it('a kernel that lacks a piece in its tree, or in its .config, lacks that flag and keeps the others', async () => {
    expect(await flags({without: ['snp']})).toEqual(['UEFI_COMPATIBLE', 'SEV_CAPABLE', 'SEV_LIVE_MIGRATABLE_V2', 'TDX_CAPABLE', 'GVNIC'])
    expect(await flags({without: ['sevGuest']})).not.toContain('SEV_SNP_CAPABLE')
    expect(await flags({unset: ['CONFIG_SEV_GUEST']})).not.toContain('SEV_SNP_CAPABLE')
    expect(await flags({without: ['tdx']})).toEqual(['UEFI_COMPATIBLE', 'SEV_CAPABLE', 'SEV_SNP_CAPABLE', 'SEV_LIVE_MIGRATABLE_V2', 'GVNIC'])
    expect(await flags({unset: ['CONFIG_INTEL_TDX_GUEST']})).not.toContain('TDX_CAPABLE')
    expect(await flags({without: ['migration']})).toEqual(['UEFI_COMPATIBLE', 'SEV_CAPABLE', 'SEV_SNP_CAPABLE', 'TDX_CAPABLE', 'GVNIC'])
    expect(await flags({unset: ['CONFIG_KVM_GUEST']})).not.toContain('SEV_LIVE_MIGRATABLE_V2')
    // no AMD_MEM_ENCRYPT: no SEV, and so no SNP and no live migration either
    expect(await flags({unset: ['CONFIG_AMD_MEM_ENCRYPT']})).toEqual(['UEFI_COMPATIBLE', 'TDX_CAPABLE', 'GVNIC'])
  })

  it('holds SNP to 6.1 or later and live migration to 6.1 LTS or 6.6 and later (GCE), whatever the tree shows', async () => {
    expect(await flags({version: '5.19.17'})).toEqual(['UEFI_COMPATIBLE', 'SEV_CAPABLE', 'TDX_CAPABLE', 'GVNIC'])
    expect(await flags({version: '6.2.16'})).toEqual(['UEFI_COMPATIBLE', 'SEV_CAPABLE', 'SEV_SNP_CAPABLE', 'TDX_CAPABLE', 'GVNIC'])
    expect(await flags({version: '6.6.1'})).toContain('SEV_LIVE_MIGRATABLE_V2')
  })

  it('claims none of them for a build that recorded no kernel check, and says why', async () => {
    const {config} = await builtKernel({})
    expect(types({config, recipeFeatures: ['sev', 'sev-snp', 'tdx'], gve: 'module', validation: passedEmulated})).toEqual(['UEFI_COMPATIBLE', 'SEV_CAPABLE', 'GVNIC'])
    expect(canBeSnpGuest(undefined).reason).toMatch(/recorded no kernel check/)
  })

  it('kernelCanBeSnpGuest reads the record: compile\'s kernel.json, else configure\'s result', async () => {
    const yes = (await builtKernel({})).support
    const no = (await builtKernel({without: ['sevGuest']})).support
    const rec = (compile?: GuestSupport, configure?: GuestSupport) => ({stages: {compile: {meta: {support: compile}}, configure: {meta: {support: configure}}}}) as unknown as BuildRecord
    expect(kernelCanBeSnpGuest(rec(yes, no)).ok).toBe(true)
    expect(kernelCanBeSnpGuest(rec(undefined, yes)).ok).toBe(true)
    const v = kernelCanBeSnpGuest(rec(no, yes))
    expect(v.ok).toBe(false)
    expect(v.reason).toMatch(/sev-guest needs-backport: the tree lacks it: no line of drivers\/virt\/coco\/sev-guest\/Kconfig|sev-guest needs-backport: the tree lacks it: no drivers\/virt\/coco\/sev-guest\/Kconfig/)
  })
})

describe('parseTarget', () => {
  it('reads directories and SFTP URLs', () => {
    expect(parseTarget('dir:/srv/images')).toEqual({kind: 'dir', path: '/srv/images'})
    expect(parseTarget('/srv/images/')).toEqual({kind: 'dir', path: '/srv/images'})
    expect(parseTarget('sftp://rel@img.example.com:2222/srv/cvm/')).toEqual({kind: 'sftp', user: 'rel', host: 'img.example.com', port: 2222, path: '/srv/cvm'})
    expect(parseTarget('sftp://rel@img.example.com/~/cvm')).toEqual({kind: 'sftp', user: 'rel', host: 'img.example.com', port: 22, path: 'cvm'})
    expect(describeTarget(parseTarget('sftp://rel@img.example.com/~/cvm'))).toBe('sftp://rel@img.example.com/~/cvm')
    expect(describeTarget(parseTarget('sftp://rel@h:2/a/b'))).toBe('sftp://rel@h:2/a/b')
  })

  it('refuses what it cannot publish to, saying what it takes', () => {
    expect(() => parseTarget('s3://bucket/x')).toThrow(/only directories and sftp/)
    expect(() => parseTarget('sftp://host/path')).toThrow(/not an SFTP URL/)
    expect(() => parseTarget('sftp://u@host/')).toThrow(/not an SFTP URL with a directory/)
  })
})

const record = (o: {version?: string; validate?: unknown} = {}) =>
  ({
    recipeId: 'r',
    sourceDateEpoch: 1700000000,
    finishedAt: '2026-01-01T00:00:00Z',
    recipe: {publish: {version: o.version}},
    stages: {assemble: {stage: 'assemble', key: 'abcdef0123456789'.repeat(4), dir: '/x', meta: {}}, ...(o.validate ? {validate: {stage: 'validate', key: 'k', dir: '/v', meta: o.validate}} : {})},
  }) as unknown as BuildRecord

describe('releaseVersion', () => {
  it('is recipe.publish.version, else <SOURCE_DATE_EPOCH>-<12 hex of the assemble key>', () => {
    expect(releaseVersion(record())).toBe('1700000000-abcdef012345')
    expect(releaseVersion(record({version: '2.1'}))).toBe('2.1')
  })
})

describe('gateOnValidation', () => {
  it('does not trust a "passed" verdict that carries a failed check or no passing check', () => {
    expect(() => gateOnValidation(record({validate: {verdict: 'passed', modes: ['emulated'], checks: [{mode: 'emulated', name: 'a', verdict: 'pass'}, {mode: 'emulated', name: 'b', verdict: 'fail'}]}}), false)).toThrow(/validation failed/)
    expect(() => gateOnValidation(record({validate: {verdict: 'passed', modes: ['emulated'], checks: [{mode: 'emulated', name: 'a', verdict: 'skip'}]}}), false)).toThrow(/not validated/)
    expect(gateOnValidation(record({validate: {verdict: 'passed', modes: ['emulated'], checks: [{mode: 'emulated', name: 'a', verdict: 'pass'}]}}), false).status).toBe('passed')
  })

  it('records when and where validation ran as the validate stage writes them (when, hostKind); a skipped one ran nowhere', () => {
    const ran = gateOnValidation(record({validate: {verdict: 'passed', modes: ['sev'], checks: [{mode: 'sev', name: 'a', verdict: 'pass'}], when: '2026-11-26T08:00:00.000Z', hostKind: 'remote'}}), false)
    expect(ran).toMatchObject({status: 'passed', modes: ['sev'], when: '2026-11-26T08:00:00.000Z', hostKind: 'remote'})
    const skipped = gateOnValidation(record({validate: {verdict: 'skipped', modes: ['emulated'], checks: [{mode: 'emulated', name: 'a', verdict: 'skip'}]}}), true)
    expect(skipped).toMatchObject({status: 'not-run', allowedUnvalidated: true, when: undefined, hostKind: 'unrecorded'})
  })
})
