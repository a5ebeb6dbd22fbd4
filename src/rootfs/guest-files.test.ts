import {createReadStream, createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'

import tar from 'tar-stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {BugError} from '../errors.js'
import {repoRoot} from '../../test/helpers/paths.js'
import {debianModule} from '../distro/debian/index.js'
import {readGuestManifest, renderGuestFiles, type GuestFacts} from './guest-files.js'
import {transformRootfs} from './transform.js'

/**
 * The modes of the files assemble adds. Read back from the rootfs tarball the transform emits (what
 * mkfs.ext4 -d is given), not from a built disk: the only disk-building test (test/assemble.test.ts)
 * needs a full debian-12 mmdebstrap base.
 */

const templates = join(repoRoot, 'templates')
const facts: GuestFacts = {
  hostname: 'cvm',
  rootPartUuid: '0f7a4c3e-1111-4e0c-9d7a-3b2f6c1d2e3f',
  espPartUuid: '0f7a4c3e-2222-4e0c-9d7a-3b2f6c1d2e3f',
  kernelRelease: '6.1.0-cvm',
  build: {recipe: 'test'},
}
/** every file templates/guest adds and the mode it must have in the image */
const INTENDED: Record<string, number> = {
  'etc/fstab': 0o644,
  'etc/hostname': 0o644,
  'etc/cloud/cloud.cfg.d/90-cvm-image.cfg': 0o644,
  'etc/apt/preferences.d/cvm-image-kernel': 0o644,
  'etc/default/locale': 0o644,
  'etc/cvm-image/build.json': 0o644,
}

/** what assemble adds for a Debian recipe: the common and Debian manifests, and the Debian module's apt hold */
async function debianGuestFiles() {
  const hold = await debianModule.kernelHold({method: 'apt-preferences', packages: ['linux-image-*']}, {kernelRelease: facts.kernelRelease, templatesDir: templates, baseFile: async () => undefined})
  return [...renderGuestFiles(templates, facts, debianModule.guestManifests), ...hold]
}

let dir: string
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cvm-guest-files-'))
})
afterAll(() => rmSync(dir, {recursive: true, force: true}))

async function tarEntries(file: string): Promise<Map<string, {type: string; mode: number}>> {
  const extract = tar.extract()
  const reading = pipeline(createReadStream(file), extract as unknown as NodeJS.WritableStream)
  const out = new Map<string, {type: string; mode: number}>()
  for await (const e of extract) {
    out.set(e.header.name.replace(/^\.\//, '').replace(/\/$/, ''), {type: e.header.type ?? 'file', mode: e.header.mode ?? -1})
    e.resume()
  }
  await reading
  return out
}

describe('guest files', () => {
  it('every added file has its intended mode (0644), not 01204 (decimal 644)', async () => {
    const files = (await debianGuestFiles()).filter((a) => a.kind === 'file')
    expect(Object.fromEntries(files.map((f) => [f.name, (f as {mode: number}).mode.toString(8)]))).toEqual(Object.fromEntries(Object.entries(INTENDED).map(([k, v]) => [k, v.toString(8)])))
  })

  it('the rootfs tarball the transform emits carries those modes (and 0755 for the directories it adds)', async () => {
    const base = join(dir, 'base.tar')
    const pack = tar.pack()
    const writing = pipeline(pack as unknown as NodeJS.ReadableStream, createWriteStream(base))
    pack.entry({name: 'etc/', type: 'directory', mode: 0o755, mtime: new Date(0)})
    pack.entry({name: 'etc/os-release', mode: 0o644, mtime: new Date(0)}, 'ID=test\n')
    pack.entry({name: 'etc/hostname', mode: 0o600, mtime: new Date(0)}, 'old\n')
    pack.finalize()
    await writing
    const output = join(dir, 'out.tar')
    await transformRootfs({input: base, output, remove: [], additions: await debianGuestFiles(), allowAbsoluteSymlinks: true, sourceDateEpoch: 1_700_000_000})
    const entries = await tarEntries(output)
    for (const [name, mode] of Object.entries(INTENDED)) {
      expect(entries.get(name), name).toBeDefined()
      expect((entries.get(name)!.mode & 0o7777).toString(8), name).toBe(mode.toString(8))
    }
    for (const d of ['etc/cvm-image', 'etc/cloud', 'boot/efi']) expect((entries.get(d)!.mode & 0o7777).toString(8), d).toBe('755')
  })

  it('the manifest schema refuses a plain-number mode and takes "0644" or 0o644', () => {
    const write = (mode: string) => {
      const d = join(dir, `m-${Math.random().toString(36).slice(2)}`)
      mkdirSync(d)
      writeFileSync(join(d, 'manifest.yaml'), `files:\n  - path: etc/x\n    template: x.hbs\n    mode: ${mode}\n`)
      return join(d, 'manifest.yaml')
    }
    expect(readGuestManifest(write('"0644"')).files[0].mode).toBe(0o644)
    expect(readGuestManifest(write("'0600'")).files[0].mode).toBe(0o600)
    expect(readGuestManifest(write('0o640')).files[0].mode).toBe(0o640)
    expect(readGuestManifest(write('"0o4755"')).files[0].mode).toBe(0o4755)
    for (const bad of ['0644', '644', '420', '"644"', '"0889"', 'rw-r--r--']) {
      const err = (() => {
        try {
          readGuestManifest(write(bad))
        } catch (e) {
          return e
        }
      })()
      expect(err, bad).toBeInstanceOf(BugError)
      expect((err as Error).message, bad).toMatch(/files\.0\.mode: must be a quoted octal string such as "0644" or a number written 0o644/)
    }
    // the shipped manifests pass: every file but the hold (the module's) comes from them
    const shipped = ['manifest.yaml', ...debianModule.guestManifests]
    expect(shipped.reduce((n, m) => n + readGuestManifest(join(templates, 'guest', m)).files.length, 0)).toBe(Object.keys(INTENDED).length - 1)
    for (const m of shipped) expect(readFileSync(join(templates, 'guest', m), 'utf8'), m).not.toMatch(/mode: 0\d/)
  })
})
