import {readdirSync, readFileSync} from 'node:fs'
import {join} from 'node:path'

import Handlebars from 'handlebars'
import {isScalar, parseDocument, visit} from 'yaml'
import {z} from 'zod'

import {BugError} from '../errors.js'
import {canonicalJson, sha256} from '../util/fsx.js'
import {canonicalEntryName} from './entry-path.js'
import type {Addition} from './transform.js'

/**
 * The guest files every image gets (templates/guest/manifest.yaml) and those of its distro family
 * (the module's own manifests, e.g. templates/guest/debian.yaml). The kernel hold is the module's.
 */

/**
 * A file mode, written so that no YAML version reads it otherwise: a quoted octal string ("0644") or a
 * number in 0o form (0o644). A plain 0644 is the decimal number 644 to a YAML 1.2 parser, so a plain
 * number is refused.
 */
const AMBIGUOUS_MODE = 'must be a quoted octal string such as "0644" or a number written 0o644 (a plain 0644 is decimal 644 in YAML 1.2)'
export const FileMode = z
  .string({error: AMBIGUOUS_MODE})
  .regex(/^0o?[0-7]{3,4}$/, AMBIGUOUS_MODE)
  .transform((s) => Number.parseInt(s.replace(/^0o/, ''), 8))

const Manifest = z.strictObject({
  files: z.array(z.strictObject({path: z.string(), template: z.string(), mode: FileMode})).default([]),
  directories: z.array(z.string()).default([]),
  symlinks: z.array(z.strictObject({path: z.string(), target: z.string()})).default([]),
})

export interface GuestFacts {
  hostname: string
  rootPartUuid: string
  espPartUuid: string
  kernelRelease: string
  /** the record of the CVM build written to /etc/cvm-image/build.json */
  build: unknown
}

export function guestTemplateDir(templatesDir: string): string {
  return join(templatesDir, 'guest')
}

/** sha256 over every file of templates/guest (names and contents), for the assemble cache key. */
export function guestTemplatesDigest(templatesDir: string): string {
  const dir = guestTemplateDir(templatesDir)
  const files = readdirSync(dir).sort()
  return sha256(canonicalJson(files.map((f) => [f, sha256(readFileSync(join(dir, f)))])))
}

/** Renders the common manifest.yaml and then the family's manifests (names under templates/guest/). */
export function renderGuestFiles(templatesDir: string, facts: GuestFacts, familyManifests: readonly string[]): Addition[] {
  const dir = guestTemplateDir(templatesDir)
  const context = {
    hostname: facts.hostname,
    rootPartUuid: facts.rootPartUuid,
    espPartUuid: facts.espPartUuid,
    kernelRelease: facts.kernelRelease,
    buildJson: JSON.stringify(facts.build, null, 2),
  }
  const out: Addition[] = []
  for (const m of ['manifest.yaml', ...familyManifests]) {
    const manifest = readGuestManifest(join(dir, m))
    for (const f of manifest.files) out.push({kind: 'file', name: checkedName(f.path), mode: f.mode, content: Buffer.from(renderGuestTemplate(templatesDir, f.template, context))})
    for (const d of manifest.directories) out.push({kind: 'directory', name: checkedName(d), mode: 0o755})
    for (const s of manifest.symlinks) out.push({kind: 'symlink', name: checkedName(s.path), target: s.target})
  }
  return out
}

/** One handlebars template of templates/guest/, strict: a name the context lacks is an error, not an empty string. */
export function renderGuestTemplate(templatesDir: string, template: string, context: object): string {
  return Handlebars.compile(readFileSync(join(guestTemplateDir(templatesDir), template), 'utf8'), {noEscape: true, strict: true})(context)
}

/** Reads templates/guest/manifest.yaml; a mode written 0o644 reaches the schema as that text, a plain number as a number (refused). */
export function readGuestManifest(manifestPath: string): z.infer<typeof Manifest> {
  const doc = parseDocument(readFileSync(manifestPath, 'utf8'))
  visit(doc, {
    Pair(_, pair) {
      const v = pair.value
      if (isScalar(pair.key) && pair.key.value === 'mode' && isScalar(v) && v.format === 'OCT') v.value = v.source ?? `0o${Number(v.value).toString(8)}`
    },
  })
  const parsed = Manifest.safeParse(doc.toJS())
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`)
    throw new BugError(`${manifestPath} is not a valid guest manifest: ${problems.join('; ')}`)
  }
  return parsed.data
}

/** A guest path as the transform names entries; a path that cannot be one is the project's own bug. */
export function checkedName(path: string): string {
  const c = canonicalEntryName(path)
  if ('problem' in c) throw new BugError(`templates/guest: path "${path}" ${c.problem}`)
  return c.name
}
