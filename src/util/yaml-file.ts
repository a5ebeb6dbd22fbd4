import {readFile} from 'node:fs/promises'

import {LineCounter, parseDocument} from 'yaml'
import type {z} from 'zod'

import {InputError} from '../errors.js'

/**
 * Reads a YAML data file of the project (a series, kernels/fixes.yaml, a kernels/features/ file)
 * against its schema. A syntax error (a duplicate key too) is an input error, exit 2, naming
 * file:line:col, never the parser's own exception; schema problems are listed all at once, each with
 * its file:line.
 */
export async function loadYamlFile<S extends z.ZodType>(file: string, schema: S, what: {noun: string; hint: string}): Promise<z.infer<S>> {
  const lines = new LineCounter()
  const doc = parseDocument(await readFile(file, 'utf8'), {lineCounter: lines, prettyErrors: false, uniqueKeys: true})
  if (doc.errors.length) {
    const pos = lines.linePos(doc.errors[0].pos[0])
    throw new InputError(`${file}:${pos.line}:${pos.col}: YAML syntax: ${doc.errors[0].message.split('\n')[0]}`, {
      hint: `fix the YAML at this position (the file is a ${what.noun}; ${what.hint})`,
    })
  }
  const r = schema.safeParse(doc.toJS())
  if (!r.success) {
    throw new InputError(`${file}: not a valid ${what.noun}`, {
      details: r.error.issues.map((i) => {
        const node = doc.getIn(i.path as (string | number)[], true) as {range?: [number]} | undefined
        return `  ${file}${node?.range ? `:${lines.linePos(node.range[0]).line}` : ''}: ${i.path.join('.')}: ${i.message}`
      }),
      hint: what.hint,
    })
  }
  return r.data
}
