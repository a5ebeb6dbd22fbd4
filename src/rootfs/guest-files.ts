import {readdirSync, readFileSync} from 'node:fs'
import {join} from 'node:path'

import Handlebars from 'handlebars'
import {isScalar, parseDocument, visit} from 'yaml'
import {z} from 'zod'

import {BugError, InputError} from '../errors.js'
import {canonicalJson, sha256} from '../util/fsx.js'
import {canonicalEntryName} from './entry-path.js'
import type {Addition} from './transform.js'

/** The guest files every image gets, described by templates/guest/manifest.yaml. */

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
  files: z.array(z.strictObject({path: z.string(), template: z.string(), mode: FileMode, when: z.enum(['kernelHoldApt']).optional()})),
  directories: z.array(z.string()).default([]),
  symlinks: z.array(z.strictObject({path: z.string(), target: z.string()})).default([]),
})

export interface GuestFacts {
  hostname: string
  rootPartUuid: string
  espPartUuid: string
  kernelRelease: string
  /** recipe.image.kernel_hold */
  kernelHold: {method: string; packages: string[]}
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

export function renderGuestFiles(templatesDir: string, facts: GuestFacts): Addition[] {
  const dir = guestTemplateDir(templatesDir)
  const manifestPath = join(dir, 'manifest.yaml')
  const manifest = readGuestManifest(manifestPath)

  if (!['apt-preferences', 'none'].includes(facts.kernelHold.method)) {
    throw new InputError(`recipe.image.kernel_hold.method "${facts.kernelHold.method}" is not supported by assemble yet`, {
      hint: 'use apt-preferences (Debian, Ubuntu) or none, or add the method to templates/guest/manifest.yaml',
    })
  }
  const conditions = {kernelHoldApt: facts.kernelHold.method === 'apt-preferences'}
  const context = {
    hostname: facts.hostname,
    rootPartUuid: facts.rootPartUuid,
    espPartUuid: facts.espPartUuid,
    kernelRelease: facts.kernelRelease,
    packages: facts.kernelHold.packages,
    buildJson: JSON.stringify(facts.build, null, 2),
  }
  if (conditions.kernelHoldApt && facts.kernelHold.packages.length === 0) {
    throw new InputError('recipe.image.kernel_hold has method apt-preferences but no packages', {hint: 'list the kernel packages to pin away, e.g. packages: ["linux-image-*"]'})
  }

  const out: Addition[] = []
  for (const f of manifest.files) {
    if (f.when && !conditions[f.when]) continue
    const template = Handlebars.compile(readFileSync(join(dir, f.template), 'utf8'), {noEscape: true, strict: true})
    out.push({kind: 'file', name: checkedName(f.path), mode: f.mode, content: Buffer.from(template(context))})
  }
  for (const d of manifest.directories) out.push({kind: 'directory', name: checkedName(d), mode: 0o755})
  for (const s of manifest.symlinks) out.push({kind: 'symlink', name: checkedName(s.path), target: s.target})
  return out
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

function checkedName(path: string): string {
  const c = canonicalEntryName(path)
  if ('problem' in c) throw new BugError(`templates/guest/manifest.yaml: path "${path}" ${c.problem}`)
  return c.name
}
