import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {stageEnv, type StageIO} from '../src/pipeline/stage.js'
import {validateStage} from '../src/pipeline/stages/validate.js'
import {projectDirs, RecipeStore} from '../src/recipe/load.js'
import {run} from '../src/util/exec.js'
import {sha256, sha256File} from '../src/util/fsx.js'
import {OVMF_VARS, OVMF_VARS_SNAKEOIL, SNAKEOIL_CERT} from '../src/validate/host-probe.js'
import {repoRoot} from './helpers/paths.js'

describe('validate stage', () => {
  const dirs = projectDirs(repoRoot)
  const recipe = new RecipeStore(dirs).load('debian-12')

  it('its key covers modes, the remote host and the seed templates', async () => {
    const a = await validateStage.inputs({recipe, dirs, options: {}, cacheDir: '/nonexistent'})
    const b = await validateStage.inputs({recipe, dirs, options: {modes: ['sev']}, cacheDir: '/nonexistent'})
    const c = await validateStage.inputs({recipe, dirs, options: {validateHost: ['root@epyc']}, cacheDir: '/nonexistent'})
    expect(a).toMatchObject({modes: ['emulated'], host: null})
    // one host keys as it did before pools; a pool by its hosts, in any order
    expect(c).toMatchObject({host: 'root@epyc'})
    const pool = await validateStage.inputs({recipe, dirs, options: {validateHost: ['root@epyc2', 'root@epyc']}, cacheDir: '/nonexistent'})
    expect(pool).toMatchObject({host: ['root@epyc', 'root@epyc2']})
    expect(JSON.stringify(await validateStage.inputs({recipe, dirs, options: {validateHost: ['root@epyc', 'root@epyc2']}, cacheDir: '/nonexistent'}))).toBe(JSON.stringify(pool))
    expect(JSON.stringify(a)).not.toBe(JSON.stringify(b))
    expect(JSON.stringify(a)).not.toBe(JSON.stringify(c))
    expect((a as {seedTemplates: string}).seedTemplates).toMatch(/^[0-9a-f]{64}$/)
    expect(validateStage.needs).toEqual(['assemble', 'compile'])
  })

  it('a signed UKI is validated under Secure Boot: with Debian\'s store for its snakeoil certificate, the given store (its sha256 in the key), or not, with why', async () => {
    const inputs = async (options: object) => (await validateStage.inputs({recipe, dirs, options, cacheDir: '/nonexistent'})).secureBoot
    expect(await inputs({})).toBeNull()
    const snakeoilVars = await sha256File(OVMF_VARS_SNAKEOIL)
    expect(await inputs({signingCert: SNAKEOIL_CERT})).toEqual({vars: OVMF_VARS_SNAKEOIL, varsSha256: snakeoilVars})
    const work = await mkdtemp(join(tmpdir(), 'cvm-validate-sb-'))
    try {
      const other = join(work, 'db.pem')
      await run('openssl', ['req', '-new', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(work, 'db.key'), '-out', other, '-days', '30', '-subj', '/CN=cvm-image test db/'])
      // any other certificate: the plain store, to enroll it into when the stage runs (the store's bytes and the certificate in the key)
      expect(await inputs({signingCert: other})).toEqual({enroll: {certPem: await readFile(other, 'utf8'), base: OVMF_VARS, baseSha256: await sha256File(OVMF_VARS)}})
      // a store of the user's: its bytes are in the key
      const vars = join(work, 'vars.fd')
      await writeFile(vars, 'a variable store')
      expect(await inputs({signingCert: other, secureBootVars: vars})).toEqual({vars, varsSha256: sha256('a variable store')})
      await writeFile(vars, 'another variable store')
      expect(await inputs({signingCert: other, secureBootVars: vars})).toEqual({vars, varsSha256: sha256('another variable store')})
    } finally {
      await rm(work, {recursive: true, force: true})
    }
  })

  it('--no-validate: every mode reported skipped with the reason, never passed', async () => {
    const out = await mkdtemp(join(tmpdir(), 'cvm-validate-stage-'))
    try {
      const ctx = {recipe, dirs, options: {skipValidation: true}, cacheDir: out}
      const io = {out, work: out, upstream: {assemble: {stage: 'assemble', key: 'k', dir: '/nowhere', meta: {}}}, progress() {}, log() {}, logFile: join(out, 'log'), signal: new AbortController().signal, env: stageEnv(ctx)} as unknown as StageIO<'assemble' | 'compile'>
      const meta = await validateStage.run(io, await validateStage.inputs(ctx))
      expect(meta.verdict).toBe('skipped')
      expect(meta.checks.every((c) => c.verdict === 'skip' && /--no-validate/.test(c.evidence))).toBe(true)
      const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'))
      expect(report.verdict).toBe('skipped')
      expect(await readFile(join(out, 'junit.xml'), 'utf8')).toMatch(/<skipped message="validation skipped by --no-validate"/)
    } finally {
      await rm(out, {recursive: true, force: true})
    }
  })
})
