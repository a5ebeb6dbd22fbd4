import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {stageEnv, type StageIO} from '../src/pipeline/stage.js'
import {validateStage} from '../src/pipeline/stages/validate.js'
import {projectDirs, RecipeStore} from '../src/recipe/load.js'
import {repoRoot} from './helpers/paths.js'

describe('validate stage', () => {
  const dirs = projectDirs(repoRoot)
  const recipe = new RecipeStore(dirs).load('debian-12')

  it('its key covers modes, the remote host and the seed templates', async () => {
    const a = await validateStage.inputs({recipe, dirs, options: {}, cacheDir: '/nonexistent'})
    const b = await validateStage.inputs({recipe, dirs, options: {modes: ['sev']}, cacheDir: '/nonexistent'})
    const c = await validateStage.inputs({recipe, dirs, options: {validateHost: 'root@epyc'}, cacheDir: '/nonexistent'})
    expect(a).toMatchObject({modes: ['emulated'], host: null})
    expect(JSON.stringify(a)).not.toBe(JSON.stringify(b))
    expect(JSON.stringify(a)).not.toBe(JSON.stringify(c))
    expect((a as {seedTemplates: string}).seedTemplates).toMatch(/^[0-9a-f]{64}$/)
    expect(validateStage.needs).toEqual(['assemble', 'compile'])
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
