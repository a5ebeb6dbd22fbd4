import {appendFile, cp, mkdtemp, readFile, rm} from 'node:fs/promises'
import {existsSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {cli} from './helpers/cli.js'
import {repoRoot} from './helpers/paths.js'

/**
 * A YAML data file of kernels/ that does not parse is the user's to fix, not a bug: exit 2, naming the
 * file, line and column, and what to do (src/util/yaml-file.ts). Each case breaks one file of a copy
 * of the project's data (--root) and runs the built binary on it.
 */
describe('a broken YAML data file under kernels/ is an input error (exit 2) naming file:line:col', () => {
  let root: string
  beforeAll(async () => {
    if (!existsSync(join(repoRoot, 'dist', 'commands', 'kernel', 'check.js'))) throw new Error('dist/ is not built: npx tsc -p tsconfig.json')
    root = await mkdtemp(join(tmpdir(), 'cvm-yaml-errors-'))
    for (const d of ['recipes', 'kernels', 'templates']) await cp(join(repoRoot, d), join(root, d), {recursive: true})
  })
  afterAll(async () => {
    if (root) await rm(root, {recursive: true, force: true})
  })

  /** Appends text to one file of the copy, runs the command, puts the file back. */
  async function broken(file: string, text: string, args: string[]) {
    const path = join(root, file)
    const saved = await readFile(path)
    const lines = saved.toString('utf8').split('\n').length - (saved.toString('utf8').endsWith('\n') ? 1 : 0)
    await appendFile(path, text)
    try {
      return {...(await cli([...args, '--root', root])), path, firstAdded: lines + 1}
    } finally {
      await cp(join(repoRoot, file), path)
    }
  }

  it('kernels/features/<name>.yaml: a duplicate key, read by kernel check', async () => {
    const r = await broken('kernels/features/sev.yaml', 'title: twice\n', ['kernel', 'check', '6.1'])
    expect(r.code, r.stderr).toBe(2)
    expect(r.stderr).toContain(`${r.path}:${r.firstAdded}:1: YAML syntax: Map keys must be unique`)
    expect(r.stderr).toMatch(/hint: fix the YAML at this position \(the file is a feature description; /)
    expect(r.stderr).not.toMatch(/YAMLParseError|a bug in cvm-image|\n\s+at /)
  })

  it('kernels/features/<name>.yaml: a nested compact mapping, read by plan', async () => {
    const r = await broken('kernels/features/nvme.yaml', 'later: see: this\n', ['plan', 'debian-12', '--cache-dir', join(root, 'cache')])
    expect(r.code, r.stderr).toBe(2)
    expect(r.stderr).toContain(`${r.path}:${r.firstAdded}:8: YAML syntax: Nested mappings are not allowed in compact mappings`)
    expect(r.stderr).not.toMatch(/YAMLParseError|a bug in cvm-image/)
  })

  it('kernels/<line>/series.yaml and kernels/fixes.yaml, read by kernel lines', async () => {
    for (const file of ['kernels/6.1/series.yaml', 'kernels/fixes.yaml']) {
      const r = await broken(file, '\tx: 1\n', ['kernel', 'lines'])
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toContain(`${r.path}:${r.firstAdded}:1: YAML syntax: Tabs are not allowed as indentation`)
      expect(r.stderr).toMatch(/hint: fix the YAML at this position \(the file is a (patch series|list of fixes); /)
    }
  })
})
