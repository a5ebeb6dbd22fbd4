import {existsSync, readdirSync} from 'node:fs'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {parseDotConfig} from './dotconfig.js'
import {judge} from './check.js'
import {listFeatures, loadFeatures} from './features.js'
import {loadAllSeries} from './series.js'
import {parseVersion} from './version.js'

const root = join(import.meta.dirname, '..', '..')
const kernels = join(root, 'kernels')

describe('kernels/ data', () => {
  it('every feature file is valid and names a fragment that exists', async () => {
    const names = await listFeatures(kernels)
    expect(names).toEqual(expect.arrayContaining(['sev', 'sev-es', 'sev-snp', 'tdx', 'swiotlb', 'nvme', 'virtio', 'gvnic', 'efi-stub', 'kexec', 'kdump']))
    for (const f of await loadFeatures(kernels)) expect(existsSync(join(root, 'templates', 'kernel', f.fragment)), f.fragment).toBe(true)
  })

  it('every series file under kernels/ is valid', async () => {
    const names = readdirSync(kernels, {recursive: true, encoding: 'utf8'}).filter((f) => f.endsWith('.yaml') && !f.startsWith('features') && f !== 'fixes.yaml')
    expect(names).toEqual(expect.arrayContaining(['5.4/series.yaml', '5.10/series.yaml', '5.10/marker.yaml', '6.1/series.yaml', '6.1/marker.yaml']))
    const series = await loadAllSeries(kernels, names)
    // the 5.4 series carries 1f221a0d0dbf as a backport written here, not as an upstream id to fetch
    const s54 = series.find((s) => s.name === '5.4/series.yaml')!.entries
    expect(s54.flatMap((e) => (e.kind === 'upstream' ? [] : e.backports))).toContain('1f221a0d0dbf')
    expect(s54.filter((e) => e.kind === 'upstream')).toEqual([])
  })

  it('judges a feature from the version, then from the options', async () => {
    const [sevEs] = await loadFeatures(kernels, ['sev-es'])
    expect(judge(sevEs, parseVersion('5.4.0'), undefined).status).toBe('needs-backport')
    expect(judge(sevEs, parseVersion('5.10.223'), parseDotConfig('# CONFIG_AMD_MEM_ENCRYPT is not set\n'))).toMatchObject({status: 'needs-config', missing: [{option: 'CONFIG_AMD_MEM_ENCRYPT', have: 'n'}]})
    expect(judge(sevEs, parseVersion('6.1.192'), parseDotConfig('CONFIG_AMD_MEM_ENCRYPT=y\n')).status).toBe('supported')
  })
})
