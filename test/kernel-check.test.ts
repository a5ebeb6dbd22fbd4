import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

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
  const logJson = vi.spyOn(KernelCheck.prototype, 'logJson').mockImplementation((json: unknown) => {
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
})
