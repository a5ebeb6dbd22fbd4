import {cpSync, existsSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {cli} from './helpers/cli.js'
import {repoRoot} from './helpers/paths.js'

/** the recipes whose family module cannot build them (src/distro/): COS has no module */
const UNSUPPORTED = ['cos-97']

describe('cvm-image CLI (the built binary)', () => {
  it('recipes --json lists every recipe of the seed table with its status', async () => {
    const r = await cli(['recipes', '--json'])
    expect(r.code).toBe(0)
    const rows = JSON.parse(r.stdout) as {id: string; status: string; problems?: string[]}[]
    const byId = Object.fromEntries(rows.map((x) => [x.id, x]))
    expect(Object.keys(byId).sort()).toEqual(['backport-4.18', 'backport-5.4', 'backport-5.8', 'centos-8', 'cos-97', 'debian-11', 'debian-12', 'debian-13', 'rhel-8.4', 'sles-15.2', 'ubuntu-18.04', 'ubuntu-20.04'])
    // a recipe that asks what its family's module cannot do is listed as unsupported, with the field and what is missing
    const unsupported = Object.fromEntries(rows.filter((x) => x.problems).map((x) => [x.id, x]))
    expect(Object.keys(unsupported).sort()).toEqual(UNSUPPORTED)
    for (const row of Object.values(unsupported)) expect(row.status, row.id).toBe('unsupported')
    expect(unsupported['cos-97'].problems).toEqual([expect.stringMatching(/^recipes\/cos-97\.yaml:5:\d+: cvm-image has no module for the distro family "cos"/)])
    expect(byId['debian-12'].status).toBe('buildable-here')
    expect(byId['debian-11'].status).toBe('buildable-here')
    expect(byId['ubuntu-20.04'].status).toBe('needs-source-access')
    // the RHEL module takes their source RPMs: what stops them is access, as their status says
    expect(byId['centos-8'].status).toBe('needs-source-access')
    expect(byId['rhel-8.4'].status).toBe('needs-subscription')
    // the sles module takes SUSE's kernel-source RPM (its patch queue applied): what stops it is the subscription
    expect(byId['sles-15.2'].status).toBe('needs-subscription')
    expect(byId['sles-15.2'].problems).toBeUndefined()
    // the proving recipes build here from the old trees' archive
    for (const id of ['backport-4.18', 'backport-5.4', 'backport-5.8']) expect(byId[id].status).toBe('buildable-here')
  })

  it('recipes --json gives a CI matrix what it needs: buildable, needs, distro, kernel, validation modes and their hosts, digest (docs/ci.md)', async () => {
    const root = mkdtempSync(join(tmpdir(), 'cvm-matrix-'))
    try {
      cpSync(join(repoRoot, 'recipes'), join(root, 'recipes'), {recursive: true})
      cpSync(join(repoRoot, 'kernels'), join(root, 'kernels'), {recursive: true})
      // a recipe of our own whose kernel is configured for sev but not sev-es, and validates in sev by default
      writeFileSync(join(root, 'recipes', 'team-sev.yaml'), 'extends: debian-12\nname: Team SEV\nkernel:\n  config:\n    features: [efi-stub, sev, swiotlb, nvme, virtio, vtpm]\nvalidate:\n  modes: [emulated, sev]\n')
      const r = await cli(['recipes', '--json', '--root', root])
      expect(r.code).toBe(0)
      type Row = {id: string; status: string; buildable: boolean; needs: {options: string[]; why: string}[]; distro?: Record<string, string>; kernel?: Record<string, unknown>; validate?: {modes: string[]; hostModes: {mode: string; host: string}[]}; formats?: string[]; digest?: string; problems?: string[]}
      const rows = JSON.parse(r.stdout) as Row[]
      const byId = Object.fromEntries(rows.map((x) => [x.id, x]))
      // the matrix filter: buildable is the status buildable-here of a recipe without problems, whatever else is listed
      for (const row of rows) expect(row.buildable, row.id).toBe(row.status === 'buildable-here' && !row.problems)
      expect(byId['cos-97'].buildable).toBe(false)

      const d12 = byId['debian-12']
      expect(d12.distro).toEqual({family: 'debian', release: '12', kernel: '6.1 (linux-source-6.1)'})
      expect(d12.kernel).toEqual({line: '6.1', upstreamVersion: '6.1', source: 'debian-package', series: ['6.1/series.yaml', '6.1/marker.yaml'], localversion: '-cvm'})
      expect(d12.needs).toEqual([])
      // debian-12's kernel is configured for the SNP and TDX guests too (features sev-snp, tdx): their modes need an SNP or TDX host
      expect(d12.validate).toEqual({
        modes: ['emulated'],
        hostModes: [
          {mode: 'emulated', host: 'runner'},
          {mode: 'sev', host: 'amd-sev'},
          {mode: 'sev-es', host: 'amd-sev-es'},
          {mode: 'snp', host: 'amd-sev-snp'},
          {mode: 'tdx', host: 'intel-tdx'},
        ],
      })
      expect(d12.formats).toEqual(['raw', 'qcow2', 'gce'])
      // the digest is the one recipes show (and a build record) gives
      const shown = JSON.parse((await cli(['recipes', 'show', 'debian-12', '--json', '--root', root])).stdout) as {digest: string}
      expect(d12.digest).toBe(shown.digest)

      const own = byId['team-sev']
      expect(own.buildable).toBe(true)
      expect(own.validate).toEqual({modes: ['emulated', 'sev'], hostModes: [{mode: 'emulated', host: 'runner'}, {mode: 'sev', host: 'amd-sev'}]})
      expect(own.digest).not.toBe(d12.digest)
      // what a job must pass: the archive a proving recipe's tree comes from, a hash for an unpinned base
      expect(byId['backport-5.4'].needs).toEqual([{options: ['--kernel-source-file'], why: 'the kernel source is the archive old-kernels.tar.zst, which is not downloaded'}])
      expect(byId['ubuntu-20.04'].needs).toEqual([{options: ['--base-sha256', '--base-file'], why: 'the base image is unpinned'}])
      expect(byId['ubuntu-20.04'].buildable).toBe(false)
    } finally {
      rmSync(root, {recursive: true, force: true})
    }
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

  it('plan and build refuse an unsupported recipe when it loads, exit 2, naming the field and what is missing', async () => {
    for (const cmd of [['plan', 'cos-97'], ['build', 'cos-97', '--cache-dir', mkdtempSync(join(tmpdir(), 'cvm-unsup-'))]]) {
      const r = await cli([...cmd, '--json'])
      expect(r.code, cmd.join(' ')).toBe(2)
      const err = JSON.parse(r.stdout) as {error: {message: string; details: string[]}}
      expect(err.error.message).toBe(`recipe ${cmd[1]} asks for what cvm-image cannot build`)
      expect(err.error.details.join('\n')).toMatch(/no module for the distro family "cos"/)
    }
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
