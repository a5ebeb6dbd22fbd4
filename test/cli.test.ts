import {cpSync, existsSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {cli} from './helpers/cli.js'
import {repoRoot} from './helpers/paths.js'

describe('cvm-image CLI (the built binary)', () => {
  it('recipes --json lists every recipe of the seed table with its status', async () => {
    const r = await cli(['recipes', '--json'])
    expect(r.code).toBe(0)
    const rows = JSON.parse(r.stdout) as {id: string; status: string; problems?: string[]}[]
    const byId = Object.fromEntries(rows.map((x) => [x.id, x]))
    expect(Object.keys(byId).sort()).toEqual(['backport-4.18', 'backport-5.4', 'backport-5.8', 'centos-8', 'cos-97', 'debian-11', 'debian-12', 'rhel-8.4', 'sles-15.2', 'ubuntu-18.04', 'ubuntu-20.04'])
    for (const row of rows) expect(row.problems, `${row.id}: ${row.problems?.join('\n')}`).toBeUndefined()
    expect(byId['debian-12'].status).toBe('buildable-here')
    expect(byId['debian-11'].status).toBe('buildable-here')
    expect(byId['rhel-8.4'].status).toBe('needs-subscription')
    expect(byId['ubuntu-20.04'].status).toBe('needs-source-access')
    // the proving recipes build here from the old trees' archive
    for (const id of ['backport-4.18', 'backport-5.4', 'backport-5.8']) expect(byId[id].status).toBe('buildable-here')
  })

  it('a recipe whose kernel source is an archive says where to get it when no --kernel-source-file is given', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'cvm-archive-'))
    const r = await cli(['build', 'backport-5.4', '--until', 'kernel-source', '--cache-dir', cache, '--json'])
    expect(r.code).toBe(2)
    const err = JSON.parse(r.stdout) as {error: {message: string; details: string[]; hint: string}}
    expect(err.error.message).toMatch(/^recipe\.kernel\.source is the archive old-kernels\.tar\.zst \(sha256 9ece2041/)
    expect(err.error.details.join('\n')).toContain('linux-5.4.59.tar.xz')
    expect(err.error.hint).toBe('give your copy with --kernel-source-file <path of old-kernels.tar.zst>')
  })

  it('recipes show prints the merged recipe of ubuntu-20.04', async () => {
    const r = await cli(['recipes', 'show', 'ubuntu-20.04', '--json'])
    expect(r.code).toBe(0)
    const shown = JSON.parse(r.stdout) as {recipe: Record<string, any>; files: string[]}
    expect(shown.files).toEqual(['recipes/ubuntu-20.04.yaml', 'recipes/_ubuntu.yaml', 'recipes/_common.yaml'])
    expect(shown.recipe.kernel.line).toBe('5.8') // its own
    expect(shown.recipe.kernel.config.features).toContain('sev') // from _common
    expect(shown.recipe.image.kernel_hold.method).toBe('apt-preferences') // from _ubuntu
    expect(shown.recipe.base.sha256).toBeNull() // unpinned, said so

    const text = await cli(['recipes', 'show', 'ubuntu-20.04'])
    expect(text.stdout).toContain('# ubuntu-20.04: resolved from recipes/ubuntu-20.04.yaml <- recipes/_ubuntu.yaml <- recipes/_common.yaml')
  })

  it('a bad recipe fails before any work with file:line:col lines and exit code 2', async () => {
    const root = mkdtempSync(join(tmpdir(), 'cvm-cli-'))
    try {
      cpSync(join(repoRoot, 'recipes'), join(root, 'recipes'), {recursive: true})
      cpSync(join(repoRoot, 'kernels'), join(root, 'kernels'), {recursive: true})
      writeFileSync(join(root, 'recipes', 'broken.yaml'), 'extends: debian-12\nimage:\n  size_gib: -1\n  colour: red\n')
      const cache = join(root, 'cache')
      const r = await cli(['build', 'broken', '--root', root, '--cache-dir', cache])
      expect(r.code).toBe(2)
      expect(r.stderr).toContain('recipes/broken.yaml:3:13: "image.size_gib": expected number to be >=1 (change its value)')
      expect(r.stderr).toContain('recipes/broken.yaml:4:3: unknown key "image.colour"')
      expect(existsSync(cache)).toBe(false) // nothing ran, nothing was created

      const j = await cli(['build', 'broken', '--root', root, '--cache-dir', cache, '--json'])
      expect(j.code).toBe(2)
      expect(JSON.parse(j.stdout).error.details).toHaveLength(2)
    } finally {
      rmSync(root, {recursive: true, force: true})
    }
  })

  it('unknown recipe and unknown flag are usage errors (exit 2)', async () => {
    expect((await cli(['plan', 'no-such-distro'])).code).toBe(2)
    expect((await cli(['plan', 'debian-12', '--no-such-flag'])).code).toBe(2)
  })

  it('plan debian-12 touches nothing and shows every stage with its key', async () => {
    const cache = join(mkdtempSync(join(tmpdir(), 'cvm-plan-')), 'cache')
    const r = await cli(['plan', 'debian-12', '--cache-dir', cache, '--json'])
    expect(r.code).toBe(0)
    const plan = JSON.parse(r.stdout) as {stages: {stage: string; key: string; cached: boolean; reason: string}[]}
    expect(plan.stages.map((s) => s.stage)).toEqual(['base', 'kernel-source', 'patch', 'configure', 'compile', 'assemble', 'validate'])
    for (const s of plan.stages) {
      expect(s.key).toMatch(/^[0-9a-f]{64}$/)
      expect(s.cached).toBe(false)
      expect(s.reason).toBe('never built for this recipe')
    }
    expect(existsSync(cache)).toBe(false)
  })

  it('every command has help', async () => {
    for (const c of ['build', 'plan', 'recipes', 'recipes show', 'doctor', 'publish', 'verify']) {
      const r = await cli([...c.split(' '), '--help'])
      expect(r.code, c).toBe(0)
      expect(r.stdout).toContain('USAGE')
    }
  })
})
