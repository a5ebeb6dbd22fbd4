import {mkdtempSync, mkdirSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {parseDotConfig} from './dotconfig.js'
import {evaluate, explainDrop, readKconfig, renderDrop} from './kconfig.js'

describe('Kconfig dependencies', () => {
  it('evaluates tristate expressions against a .config', () => {
    const c = parseDotConfig('CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_S="x"\n')
    expect(evaluate('A && B', c)).toBe(1)
    expect(evaluate('A && !C', c)).toBe(2)
    expect(evaluate('C || B', c)).toBe(1)
    expect(evaluate('A=y && S="x"', c)).toBe(2)
    expect(evaluate('!(A || C)', c)).toBe(0)
    expect(evaluate('$(cc-option,-mabi=ms) && A', c)).toBe(2)
  })

  it('names the off symbol of an if block around a sourced file, and select-only symbols', () => {
    const tree = mkdtempSync(join(tmpdir(), 'kconfig-'))
    mkdirSync(join(tree, 'arch', 'x86'), {recursive: true})
    mkdirSync(join(tree, 'drivers'), {recursive: true})
    writeFileSync(join(tree, 'Kconfig'), 'mainmenu "t"\nsource "arch/$(SRCARCH)/Kconfig"\nmenuconfig VIRT\n\tbool "virt"\nif VIRT\nsource "drivers/Kconfig"\nendif\n')
    writeFileSync(join(tree, 'arch', 'x86', 'Kconfig'), 'config X86_64\n\tdef_bool y\nconfig POOL\n\tbool\nconfig MEM\n\tbool "mem"\n\tselect POOL\n\thelp\n\t  depends on NOTHING here: help text\n')
    writeFileSync(join(tree, 'drivers', 'Kconfig'), 'config GUEST\n\ttristate "guest"\n\tdepends on MEM && X86_64\n')
    const db = readKconfig(tree)
    const c = parseDotConfig('CONFIG_X86_64=y\nCONFIG_MEM=y\n')
    const guest = explainDrop(db, 'CONFIG_GUEST', c)
    expect(guest.unmet.map((u) => u.off).flat()).toEqual(['CONFIG_VIRT=n'])
    expect(renderDrop(guest)).toContain('depends on "VIRT" (Kconfig:5)')
    expect(renderDrop(explainDrop(db, 'CONFIG_POOL', c))).toContain('selected by MEM')
    expect(explainDrop(db, 'CONFIG_MEM', c).unmet).toEqual([])
    expect(explainDrop(db, 'CONFIG_NOPE', c).unknown).toBe(true)
  })
})
