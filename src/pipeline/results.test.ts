import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {testContext} from '../../test/fixtures/counting-stages.js'
import {BugError} from '../errors.js'
import {StageCache} from './cache.js'
import {stageResult, type StageResults} from './results.js'
import {runStages, upstreamFor} from './run.js'
import type {Stage} from './stage.js'

const base = {stage: 'base', key: 'k', dir: '/x', meta: {source: 's', sha256: 'h', entries: 1}} as const

describe('typed stage results', () => {
  it('the accessor gives the stage asked for, and refuses one that is not there, naming the reader', () => {
    const results: StageResults = {base}
    expect(stageResult(results, 'base', 'assemble').meta.entries).toBe(1)
    expect(() => stageResult(results, 'compile', 'assemble')).toThrow(BugError)
    expect(() => stageResult(results, 'compile', 'assemble')).toThrow("assemble needs the compile stage's result, and there is none")
  })

  it('a stage gets exactly the upstream results it needs; one missing is refused, never a run with less', () => {
    const stage = {name: 'assemble', needs: ['base', 'compile']} as unknown as Stage
    expect(() => upstreamFor(stage, {base})).toThrow("stage assemble needs the compile stage's result")
    expect(Object.keys(upstreamFor({name: 'assemble', needs: ['base']} as unknown as Stage, {base, 'kernel-source': {...base, stage: 'kernel-source'}} as unknown as StageResults))).toEqual(['base'])
  })

  it('run() receives what inputs() returned, computed once', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'cvm-results-'))
    try {
      let calls = 0
      const seen: unknown[] = []
      const stage: Stage<{n: number; at: string}, {ok: boolean}, never> = {
        name: 'base',
        title: 'base',
        code: import.meta.url,
        needs: [],
        inputs: () => ({n: ++calls, at: 'input'}),
        async run(_io, inputs) {
          seen.push(inputs)
          return {ok: true}
        },
      }
      await runStages(testContext(cacheDir), new StageCache(cacheDir), [stage as Stage], {renderer: 'silent'})
      expect(calls).toBe(1)
      expect(seen).toEqual([{n: 1, at: 'input'}])
    } finally {
      rmSync(cacheDir, {recursive: true, force: true})
    }
  })
})
