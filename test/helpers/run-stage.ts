/**
 * Runs one stage on its own, as whatever user starts it (the tests start it as an unprivileged
 * user). argv[2]: a JSON file {stage: 'base' | 'assemble', recipe, out, work, upstream, logFile,
 * cacheDir, options?}. Prints the stage's meta as JSON on the last line of stdout.
 */
import {readFileSync} from 'node:fs'

import {assembleStage} from '../../src/pipeline/stages/assemble.js'
import {baseStage} from '../../src/pipeline/stages/base.js'
import {projectDirs} from '../../src/recipe/load.js'
import {isCvmError} from '../../src/errors.js'
import {stageEnv, type Stage} from '../../src/pipeline/stage.js'
import {repoRoot} from './paths.js'

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const stage = {assemble: assembleStage, base: baseStage}[spec.stage as 'assemble' | 'base']
try {
  const ctx = {recipe: spec.recipe, dirs: projectDirs(repoRoot), options: spec.options ?? {}, cacheDir: spec.cacheDir}
  // as the runner does: run() gets what inputs() returned
  const meta = await (stage as Stage).run(
    {
      out: spec.out,
      work: spec.work,
      upstream: spec.upstream ?? {},
      progress: (l) => console.error(`.. ${l}`),
      log: (l) => console.error(l),
      logFile: spec.logFile,
      signal: new AbortController().signal,
      env: stageEnv(ctx),
    },
    await (stage as Stage).inputs(ctx),
  )
  console.log(JSON.stringify(meta))
} catch (e) {
  console.error(isCvmError(e) ? e.render() : e)
  process.exit(isCvmError(e) ? e.exitCode : 70)
}
