/**
 * Runs the assemble stage on its own, as whatever user starts it (the tests start it as an
 * unprivileged user). argv[2]: a JSON file {recipe: LoadedRecipe, out, work, upstream, logFile}.
 * Prints the stage's meta as the last line of stdout, as JSON.
 */
import {readFileSync} from 'node:fs'

import {assembleStage} from '../../src/pipeline/stages/assemble.js'
import {projectDirs} from '../../src/recipe/load.js'
import {isCvmError} from '../../src/errors.js'
import {repoRoot} from './paths.js'

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'))
try {
  const meta = await assembleStage.run(
    {recipe: spec.recipe, dirs: projectDirs(repoRoot), options: {}, cacheDir: spec.cacheDir},
    {
      out: spec.out,
      work: spec.work,
      upstream: spec.upstream,
      progress: (l) => console.error(`.. ${l}`),
      log: (l) => console.error(l),
      logFile: spec.logFile,
      signal: new AbortController().signal,
    },
  )
  console.log(JSON.stringify(meta))
} catch (e) {
  console.error(isCvmError(e) ? e.render() : e)
  process.exit(isCvmError(e) ? e.exitCode : 70)
}
