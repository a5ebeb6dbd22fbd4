// Fails (exit 1) when a module of src/, test/ or bench/ imports itself through others, type-only
// imports and import() included: the layers point one way (README "Layout").
import {relative} from 'node:path'

import {parseCircular, parseDependencyTree} from 'dpdm'

const root = process.argv[2] ?? process.cwd()
const tree = await parseDependencyTree(['src/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts'], {cwd: root, context: root, exclude: /node_modules/})
const cycles = parseCircular(tree)
const modules = Object.keys(tree).filter((m) => !m.includes('node_modules')).length
if (cycles.length === 0) {
  console.error(`cvm-image: no import cycles among ${modules} modules`)
  process.exit(0)
}
console.error(`cvm-image: ${cycles.length} import cycle(s): each module below imports the next, and the last imports the first`)
for (const [i, c] of cycles.entries()) console.error(`  ${i + 1}) ${[...c, c[0]].map((m) => relative(root, m) || m).join(' -> ')}`)
console.error('hint: move the shared types (or the factory) into a leaf file that both sides import, so imports run one way: commands -> build service -> pipeline -> stages -> domain -> util (README "Layout")')
process.exit(1)
