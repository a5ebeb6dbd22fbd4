import {describe, expect, it} from 'vitest'

import {KernelSource} from '../../recipe/schema.js'
import {rhelModule} from '../rhel/index.js'
import {slesModule} from './index.js'

describe('sles module: the kernel sources it takes', () => {
  it('takes a source RPM, with its config from config.tar.bz2', () => {
    expect(slesModule.sourceKinds).toEqual(['srpm'])
    expect(slesModule.distroConfigFrom.srpm).toMatch(/config\.tar\.bz2, config\/x86_64\/default/)
    expect(slesModule.sourceProblem!({kind: 'srpm', url: 'https://x/kernel-source-5.3.18-22.2.src.rpm', sha256: null})).toBeUndefined()
    expect(slesModule.sourceProblem!({kind: 'srpm', url: 'https://x/k.src.rpm', sha256: null, config: 'x86_64/kvmsmall'})).toBeUndefined()
  })

  it('refuses SUSE\'s kernel-source git repository as a tree, pointing at the source RPM', () => {
    expect(slesModule.sourceProblem!({kind: 'git', url: 'https://github.com/SUSE/kernel-source', ref: 'SLE15-SP2'})).toMatch(/is SUSE's kernel-source repository: a patch queue .* give the kernel-source \.src\.rpm \(kind srpm\)/)
  })

  it('the recipe field: source.config is <arch>/<flavour>, one level, no path above', () => {
    const parse = (config: string) => KernelSource.safeParse({kind: 'srpm', url: 'https://x/k.src.rpm', sha256: null, config}).success
    expect(parse('x86_64/default')).toBe(true)
    expect(parse('arm64/64kb')).toBe(true)
    for (const bad of ['../default', 'x86_64/../default', 'config/x86_64/default', '/x86_64/default', 'x86_64/']) expect(parse(bad), bad).toBe(false)
  })

  it('a config is named as the family keeps it: <arch>/<flavour> for SUSE, a kernel-*.config file for RHEL', () => {
    expect(slesModule.sourceProblem!({kind: 'srpm', url: 'https://x/k.src.rpm', sha256: null, config: 'kernel-x86_64.config'})).toMatch(/must be <arch>\/<flavour> such as x86_64\/default, not kernel-x86_64\.config$/)
    expect(rhelModule.sourceProblem!({kind: 'srpm', url: 'https://x/k.src.rpm', sha256: null, config: 'x86_64/default'})).toMatch(/must be one such as kernel-x86_64\.config, not x86_64\/default$/)
    expect(rhelModule.sourceProblem!({kind: 'srpm', url: 'https://x/k.src.rpm', sha256: null, config: 'kernel-x86_64-rhel.config'})).toBeUndefined()
  })
})
