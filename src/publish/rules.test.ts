import {describe, expect, it} from 'vitest'

import type {BuildRecord} from '../pipeline/build-record.js'
import {guestOsFeatures} from './guest-os-features.js'
import {parseKernelConfig} from './kernel-config.js'
import {describeTarget, parseTarget} from './target.js'
import {gateOnValidation, type ValidationSummary} from './validation-gate.js'
import {releaseVersion} from './version.js'

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

  it('claims SEV_SNP_CAPABLE only on 5.19+ with SEV_GUEST and the sev-snp feature', () => {
    const snp = {config: sevConfig, recipeFeatures: ['sev', 'sev-snp'], validation: passedEmulated}
    expect(types({...snp, kernelVersion: '6.1.192'})).toContain('SEV_SNP_CAPABLE')
    expect(types({...snp, kernelVersion: '5.10.200'})).not.toContain('SEV_SNP_CAPABLE')
    expect(types({...snp, recipeFeatures: ['sev'], kernelVersion: '6.1.192'})).not.toContain('SEV_SNP_CAPABLE')
  })

  it('claims GVNIC, VIRTIO_SCSI_MULTIQUEUE and IDPF from their drivers in the config (y or m)', () => {
    const config = parseKernelConfig('CONFIG_GVE=m\nCONFIG_SCSI_VIRTIO=y\nCONFIG_IDPF=m\n')
    expect(types({config, recipeFeatures: [], validation: passedEmulated})).toEqual(['UEFI_COMPATIBLE', 'GVNIC', 'VIRTIO_SCSI_MULTIQUEUE', 'IDPF'])
  })

  it('claims TDX_CAPABLE only with INTEL_TDX_GUEST=y and the tdx feature', () => {
    const config = parseKernelConfig('CONFIG_INTEL_TDX_GUEST=y\n')
    expect(types({config, recipeFeatures: ['tdx'], validation: passedEmulated})).toContain('TDX_CAPABLE')
    expect(types({config, recipeFeatures: [], validation: passedEmulated})).not.toContain('TDX_CAPABLE')
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
