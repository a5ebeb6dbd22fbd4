import {describe, expect, it} from 'vitest'

import {configVersion, contains, parseVersion} from './version.js'

describe('kernel versions', () => {
  it('a stable backport counts only on its own line and from its release on', () => {
    const stable = ['5.10.35', '5.11.19']
    expect(contains(parseVersion('5.10.35'), '5.12', stable)).toBe(true)
    expect(contains(parseVersion('5.10.223'), '5.12', stable)).toBe(true)
    expect(contains(parseVersion('5.10.34'), '5.12', stable)).toBe(false)
    expect(contains(parseVersion('5.4.250'), '5.12', stable)).toBe(false)
    expect(contains(parseVersion('5.12'), '5.12', stable)).toBe(true)
    expect(contains(parseVersion('6.1.192'), '5.12', [])).toBe(true)
  })

  it('reads the version a .config was written for', () => {
    expect(configVersion('#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.1.192 Kernel Configuration\n#\n')).toEqual({major: 6, minor: 1, patch: 192})
    expect(configVersion('CONFIG_X=y\n')).toBeUndefined()
  })
})
