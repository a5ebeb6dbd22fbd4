import {describe, expect, it} from 'vitest'

import {repoRoot} from '../../../test/helpers/paths.js'
import {debian12Recipe} from '../../../test/helpers/recipes.js'
import {InputError} from '../../errors.js'
import {configureStage} from '../../pipeline/stages/configure.js'
import {projectDirs} from '../../recipe/load.js'
import {KernelSource, type KernelSourceSpec} from '../../recipe/schema.js'
import {pickConfig} from './srpm.js'

type SrpmSpec = Extract<KernelSourceSpec, {kind: 'srpm'}>
const url = 'https://vault.centos.org/8.1.1911/BaseOS/Source/SPackages/kernel-4.18.0-147.5.1.el8_1.src.rpm'
const spec = (config?: string): SrpmSpec => ({kind: 'srpm', url, sha256: 'a'.repeat(64), ...(config ? {config} : {})})

describe('srpm source: the recipe field', () => {
  it('takes a URL, a sha256 or null, and optionally the config file name inside', () => {
    expect(KernelSource.parse({kind: 'srpm', url, sha256: null})).toEqual({kind: 'srpm', url, sha256: null})
    expect(KernelSource.parse(spec('kernel-x86_64-rhel.config'))).toEqual(spec('kernel-x86_64-rhel.config'))
    expect(KernelSource.safeParse({...spec(), config: '../kernel-x86_64.config'}).success).toBe(false)
    expect(KernelSource.safeParse({...spec(), member: 'linux'}).success).toBe(false)
  })
})

describe('srpm source: which config base distro reads', () => {
  const pick = (names: string[], config?: string) => pickConfig(names, spec(config))
  const refusal = (names: string[], config?: string) => {
    try {
      pick(names, config)
    } catch (e) {
      expect(e).toBeInstanceOf(InputError)
      return e as InputError
    }
    throw new Error('no refusal')
  }

  it('RHEL 8: kernel-x86_64.config, not the debug or another arch\'s', () => {
    expect(pick(['kernel-aarch64.config', 'kernel-x86_64-debug.config', 'kernel-x86_64.config', 'kernel.spec', 'linux-4.18.0-147.5.1.el8.tar.xz'])).toBe('kernel-x86_64.config')
  })

  it('RHEL 9 and 10: kernel-x86_64-rhel.config, not the debug, rt or Fedora one', () => {
    expect(pick(['kernel-x86_64-debug-rhel.config', 'kernel-x86_64-fedora.config', 'kernel-x86_64-rt-rhel.config', 'kernel-x86_64-rhel.config'])).toBe('kernel-x86_64-rhel.config')
  })

  it('RHEL 7: kernel-<version>-x86_64.config, not the debug one', () => {
    expect(pick(['kernel-3.10.0-x86_64-debug.config', 'kernel-3.10.0-x86_64.config', 'kernel-3.10.0-ppc64le.config'])).toBe('kernel-3.10.0-x86_64.config')
  })

  it('the config the recipe names wins, and one it does not have is refused with what there is', () => {
    expect(pick(['kernel-x86_64-fedora.config', 'kernel-x86_64-rhel.config'], 'kernel-x86_64-fedora.config')).toBe('kernel-x86_64-fedora.config')
    const e = refusal(['kernel-x86_64.config'], 'kernel-x86_64-rhel.config')
    expect(e.message).toBe('kernel-4.18.0-147.5.1.el8_1.src.rpm has no kernel-x86_64-rhel.config (recipe.kernel.source.config)')
    expect(e.details).toEqual(['  configs in kernel-4.18.0-147.5.1.el8_1.src.rpm: kernel-x86_64.config'])
  })

  it('no x86_64 config, or two of one kind, is refused: the recipe must name one', () => {
    expect(refusal(['kernel-aarch64.config', 'kernel-x86_64-debug.config']).hint).toBe('name the config to use in recipe.kernel.source.config, or use kernel.config.base lean or defconfig')
    expect(refusal(['kernel-3.10.0-x86_64.config', 'kernel-3.10.1-x86_64.config']).message).toBe('kernel-4.18.0-147.5.1.el8_1.src.rpm has several x86_64 configs: kernel-3.10.0-x86_64.config, kernel-3.10.1-x86_64.config')
  })
})

describe('srpm source: the configure stage\'s key', () => {
  const inputs = (source: SrpmSpec) => {
    const recipe = debian12Recipe((r) => {
      const kernel = r.kernel as {source: unknown; config: {base: string}}
      kernel.source = source
      kernel.config.base = 'distro'
    })
    return configureStage.inputs({recipe, dirs: projectDirs(repoRoot), options: {}, cacheDir: '/nonexistent'})
  }

  it('base distro: the key changes with the source RPM\'s sha256 and with the config named', async () => {
    const a = await inputs(spec())
    expect(a.source).toEqual(spec())
    expect(await inputs({...spec(), sha256: 'b'.repeat(64)})).not.toEqual(a)
    expect(await inputs(spec('kernel-x86_64-debug.config'))).not.toEqual(a)
    expect(await inputs(spec())).toEqual(a)
  })
})
