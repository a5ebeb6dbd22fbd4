// Runs the benchmarks: `npm run bench` runs every bench/*.ts; `npm run bench -- e2e-build` runs one.
// Each benchmark is a script that prints its own figures; they take minutes, not seconds.
import {spawnSync} from 'node:child_process'
import {readdirSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const all = readdirSync(here).filter((f) => f.endsWith('.ts') && f !== 'index.ts' && !f.endsWith('-worker.ts')).map((f) => f.slice(0, -3)).sort()
const wanted = process.argv.slice(2)
const unknown = wanted.filter((w) => !all.includes(w))
if (unknown.length) {
  console.error(`no benchmark named ${unknown.join(', ')}; there are: ${all.join(', ')}`)
  process.exit(2)
}
let failed = 0
for (const name of wanted.length ? wanted : all) {
  console.log(`\n=== bench ${name}`)
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, `${name}.ts`)], {stdio: 'inherit'})
  if (r.status !== 0) failed++
}
process.exit(failed ? 1 : 0)
