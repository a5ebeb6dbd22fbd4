import {describe, expect, it} from 'vitest'

import {addonEntries, guardsSelect, parseSeriesConf, selectedPatches, seriesSymbols} from './series-conf.js'

describe('series.conf: entries', () => {
  it('reads names in order with the guards before them, skipping comments and blank lines, each with its line', () => {
    const text = [
      '# Kernel patches configuration file',
      '',
      '\t########################################################',
      '\tpatches.kernel.org/5.3.1-001-a.patch',
      '\t+jdoe\tpatches.suse/b.patch # disabled until it builds',
      '\t-\tpatches.suse/c.patch',
      '\tpatches.fixes/d#e.patch',
    ].join('\n')
    expect(parseSeriesConf(text)).toEqual([
      {patch: 'patches.kernel.org/5.3.1-001-a.patch', guards: [], file: 'series.conf', line: 4},
      {patch: 'patches.suse/b.patch', guards: ['+jdoe'], file: 'series.conf', line: 5},
      {patch: 'patches.suse/c.patch', guards: ['-'], file: 'series.conf', line: 6},
      // a # inside a name is no comment
      {patch: 'patches.fixes/d#e.patch', guards: [], file: 'series.conf', line: 7},
    ])
  })

  it('joins a line ending in a backslash with the next, and guards every later name on a line with all guards before it', () => {
    expect(parseSeriesConf('+a \\\n  -b patches.suse/x.patch\n+c patches.suse/y.patch +d patches.suse/z.patch\n')).toEqual([
      {patch: 'patches.suse/x.patch', guards: ['+a', '-b'], file: 'series.conf', line: 1},
      {patch: 'patches.suse/y.patch', guards: ['+c'], file: 'series.conf', line: 3},
      {patch: 'patches.suse/z.patch', guards: ['+c', '+d'], file: 'series.conf', line: 3},
    ])
  })

  it('patches.addon/series: names without a folder are in patches.addon/', () => {
    expect(addonEntries('my.patch\npatches.suse/other.patch\n')).toEqual([
      {patch: 'patches.addon/my.patch', guards: [], file: 'patches.addon/series', line: 1},
      {patch: 'patches.suse/other.patch', guards: [], file: 'patches.addon/series', line: 2},
    ])
  })
})

describe('series.conf: guards', () => {
  const defined = new Set(['RT', 'cvm_test'])
  const select = (...guards: string[]) => guardsSelect(guards, defined)

  it('no guard: applied', () => {
    expect(select()).toBe(true)
  })

  it('+sym: applied only when sym is defined; -sym: left out only when it is', () => {
    expect(select('+RT')).toBe(true)
    expect(select('+jdoe')).toBe(false)
    expect(select('-RT')).toBe(false)
    expect(select('-jdoe')).toBe(true)
  })

  it('+!sym and -!sym test that sym is not defined', () => {
    expect(select('+!jdoe')).toBe(true)
    expect(select('+!RT')).toBe(false)
    expect(select('-!jdoe')).toBe(false)
    expect(select('-!RT')).toBe(true)
  })

  it('a lone - leaves the patch out, a lone + puts it in', () => {
    expect(select('-')).toBe(false)
    expect(select('+')).toBe(true)
  })

  it('the last guard that matches decides; when none matches, the first guard\'s sign says the opposite', () => {
    expect(select('+RT', '-cvm_test')).toBe(false)
    expect(select('-RT', '+cvm_test')).toBe(true)
    expect(select('+jdoe', '+RT')).toBe(true)
    // neither matches: a first + means "only if", so out; a first - means "unless", so in
    expect(select('+jdoe', '+alice')).toBe(false)
    expect(select('-jdoe', '-alice')).toBe(true)
    expect(select('-jdoe', '+alice')).toBe(true)
  })

  it('selects in series order', () => {
    const entries = parseSeriesConf('patches.suse/a.patch\n+jdoe patches.suse/b.patch\n-jdoe patches.suse/c.patch\n+cvm_test patches.suse/d.patch\n- patches.suse/e.patch\n')
    expect(selectedPatches(entries, defined).map((e) => e.patch)).toEqual(['patches.suse/a.patch', 'patches.suse/c.patch', 'patches.suse/d.patch'])
  })
})

describe('series.conf: the symbols', () => {
  it('are the words of extra-symbols, and none without it: not the architecture, not the flavour', () => {
    expect(seriesSymbols(undefined)).toEqual(new Set())
    expect(seriesSymbols('RT\n cvm_test \n')).toEqual(new Set(['RT', 'cvm_test']))
    const entries = parseSeriesConf('+x86_64 patches.suse/arch.patch\n+default patches.suse/flavour.patch\npatches.suse/all.patch\n')
    expect(selectedPatches(entries, seriesSymbols(undefined)).map((e) => e.patch)).toEqual(['patches.suse/all.patch'])
  })
})
