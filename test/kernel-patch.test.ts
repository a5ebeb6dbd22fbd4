import {existsSync, mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {mkdir, readFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {beforeAll, describe, expect, it} from 'vitest'

import {InputError} from '../src/errors.js'
import type {PatchResult} from '../src/pipeline/stages/patch.js'
import {run} from '../src/util/exec.js'
import {sha256} from '../src/util/fsx.js'
import {repoRoot, sharedTestCache} from './helpers/paths.js'
import {kernelProject, runKernelProject} from './kernel-fixtures.js'

const MARKER = readFileSync(join(repoRoot, 'kernels', '6.1', 'cvm-marker.patch'), 'utf8')
const markerSeries = (extra = '') => `title: t\npatches:\n  - file: cvm-marker.patch\n    subject: marker\n    why: proves the patched kernel booted\n${extra}`

/** The unpatched linux-source-6.1 tree, from the kernel-source stage. */
let sourceTree: string

beforeAll(async () => {
  const dirs = await kernelProject({})
  const r = await runKernelProject(dirs, 'kernel-source')
  sourceTree = join(r.results['kernel-source']!.dir, 'tree')
})

/** A two-hunk patch of init/main.c whose second hunk's context is not in the real tree. */
async function patchWithBadSecondHunk(): Promise<string> {
  const lines = (await readFile(join(sourceTree, 'init', 'main.c'), 'utf8')).split('\n')
  const dir = mkdtempSync(join(tmpdir(), 'badpatch-'))
  const altered = [...lines]
  altered[1000] = `${altered[1000]} /* context the tree does not have */`
  const changed = [...altered]
  changed.splice(1001, 0, '/* cvm-image test: second hunk */')
  changed.splice(10, 0, '/* cvm-image test: first hunk */')
  await mkdir(join(dir, 'a', 'init'), {recursive: true})
  await mkdir(join(dir, 'b', 'init'), {recursive: true})
  writeFileSync(join(dir, 'a', 'init', 'main.c'), altered.join('\n'))
  writeFileSync(join(dir, 'b', 'init', 'main.c'), changed.join('\n'))
  const diff = await run('diff', ['-u', 'a/init/main.c', 'b/init/main.c'], {cwd: dir, reject: false})
  return diff.stdout + '\n'
}

describe('patch stage on the real linux-source-6.1 tree', () => {
  it('applies a series of local patches and records each with its sha256', async () => {
    const dirs = await kernelProject({kernelFiles: {'6.1/s.yaml': markerSeries(), '6.1/cvm-marker.patch': MARKER}, series: ['6.1/s.yaml']})
    const r = await runKernelProject(dirs, 'patch', {force: ['patch']})
    const patch = r.results.patch!
    expect(patch.meta).toMatchObject({control: false, applied: [{file: '6.1/cvm-marker.patch', kind: 'local', subject: 'marker', sha256: sha256(MARKER), action: 'applied'}], skipped: [], withheld: []})
    const patched = join(patch.dir, 'tree')
    expect(readFileSync(join(patched, 'init', 'cvm_marker.c'), 'utf8')).toContain('cvm-image: series debian-12-cvm applied')
    expect(readFileSync(join(patched, 'init', 'Makefile'), 'utf8')).toContain('cvm_marker.o')
    // the source tree shares files with the patched copy by hard links: patch must not have written through them
    expect(readFileSync(join(sourceTree, 'init', 'Makefile'), 'utf8')).not.toContain('cvm_marker.o')
    expect(existsSync(join(sourceTree, 'init', 'cvm_marker.c'))).toBe(false)
  })

  it('stops at a patch that does not apply, naming the patch, the file and the hunk; the tree is untouched', async () => {
    const bad = await patchWithBadSecondHunk()
    const series = markerSeries('  - file: bad-context.patch\n    subject: stale context\n    why: test\n')
    const dirs = await kernelProject({kernelFiles: {'6.1/s.yaml': series, '6.1/cvm-marker.patch': MARKER, '6.1/bad-context.patch': bad}, series: ['6.1/s.yaml']})
    const before = sha256(readFileSync(join(sourceTree, 'init', 'main.c')))
    const err = await runKernelProject(dirs, 'patch', {force: ['patch']}).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InputError)
    const text = (err as InputError).render()
    expect(text).toContain('patch 6.1/s.yaml: bad-context.patch does not apply')
    expect(text).toContain('init/main.c: hunk #2 @@ -')
    expect(text).toContain('1 patch(es) before it applied; the source tree is unchanged and nothing was built')
    expect(sha256(readFileSync(join(sourceTree, 'init', 'main.c')))).toBe(before)
    expect(readFileSync(join(sourceTree, 'init', 'Makefile'), 'utf8')).not.toContain('cvm_marker.o')
    // the failed attempt kept its log but no patched tree
    expect(existsSync(join(sharedTestCache(), 'failed', 'patch', 'out', 'tree'))).toBe(false)
  })

  it('resolves an upstream-commit entry from a local kernel git and skips one the source already contains', async () => {
    const git = mkdtempSync(join(tmpdir(), 'kernel-git-'))
    const g = (...args: string[]) => run('git', ['-C', git, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', ...args])
    await g('init', '-q')
    await mkdir(join(git, 'init'))
    const version = readFileSync(join(sourceTree, 'init', 'version.c'), 'utf8')
    writeFileSync(join(git, 'init', 'version.c'), version)
    await g('add', '.')
    await g('commit', '-qm', 'base')
    writeFileSync(join(git, 'init', 'version.c'), `${version}/* cvm-image test: an upstream change (${Date.now()}) */\n`)
    await g('commit', '-qam', 'init: a change from the test kernel git')
    const id = (await g('rev-parse', 'HEAD')).stdout.trim().slice(0, 12)
    const series = [
      'title: t',
      'patches:',
      `  - {id: ${id}, subject: "init: a change from the test kernel git", why: test, mainline: "6.2"}`,
      '  - {id: 1f221a0d0dbf, subject: "swiotlb: respect min_align_mask", why: test, mainline: "5.12", stable: ["5.10.35", "5.11.19"], fixes: [min-align-mask]}',
      '',
    ].join('\n')
    const dirs = await kernelProject({kernelFiles: {'6.1/u.yaml': series}, series: ['6.1/u.yaml']})
    const r = await runKernelProject(dirs, 'patch', {force: ['patch'], options: {kernelGit: git}})
    const meta = r.results.patch!.meta as {applied: Array<{id: string; sha256: string}>; skipped: Array<{id: string; reason: string}>}
    expect(meta.applied.map((a) => a.id)).toEqual([id])
    // judged from the tree's content (its min_align_mask code), not from 6.1's version: no kernel git fetch for it
    expect(meta.skipped).toEqual([expect.objectContaining({id: '1f221a0d0dbf', action: 'skipped', reason: expect.stringMatching(/^the tree already has min-align-mask \(include\/linux\/device\.h:\d+: unsigned int min_align_mask;\)/)})])
    expect(readFileSync(join(r.results.patch!.dir, 'tree', 'init', 'version.c'), 'utf8')).toContain('cvm-image test: an upstream change')
    const cached = join(sharedTestCache(), 'upstream-patches', `${id}.patch`)
    expect(sha256(readFileSync(cached))).toBe(meta.applied[0].sha256)
  })
})

describe('what a tree already has is read from its content', () => {
  it('skips a patch that applies in reverse: the second copy of the marker patch is already in the tree', async () => {
    const series = `title: t\npatches:\n  - {file: cvm-marker.patch, subject: marker, why: test}\n  - {file: marker-again.patch, subject: the same change again, why: test}\n`
    const dirs = await kernelProject({kernelFiles: {'6.1/s.yaml': series, '6.1/cvm-marker.patch': MARKER, '6.1/marker-again.patch': MARKER}, series: ['6.1/s.yaml']})
    const r = await runKernelProject(dirs, 'patch', {force: ['patch']})
    const meta = r.results.patch!.meta as unknown as PatchResult
    expect(meta.applied.map((a) => a.file)).toEqual(['6.1/cvm-marker.patch'])
    expect(meta.skipped).toEqual([expect.objectContaining({file: '6.1/marker-again.patch', action: 'skipped', reason: 'already in the tree: the patch applies in reverse'})])
  })

  it('a control build applies only the build fixes; a full one checks that each backport makes the fixes it claims', async () => {
    // two test fixes beside the real ones: one the marker patch makes, one nothing makes
    const fixes = `${readFileSync(join(repoRoot, 'kernels', 'fixes.yaml'), 'utf8')}
  - {id: marker-printed, title: t, bug: t, commits: ["000000000001"], mainline: "6.2", present_when: [{file: init/cvm_marker.c, matches: 'pr_info\\("cvm-image: series'}]}
  - {id: never-shown, title: t, bug: t, commits: ["000000000002"], mainline: "6.2", present_when: [{file: init/cvm_marker.c, matches: 'no such line'}]}
`
    const series = (fix: string) =>
      ['title: t', 'patches:', '  - {file: build-fix.patch, kind: build-fix, subject: a build fix, why: test}', '  - {file: tree-fix.patch, kind: tree-fix, subject: a tree fix, why: test}', `  - {file: cvm-marker.patch, kind: backport, subject: marker, why: test, backports: [1f221a0d0dbf], differs: test, fixes: [${fix}]}`, ''].join('\n')
    const buildFix = '--- a/init/cvm_buildfix.c\n+++ b/init/cvm_buildfix.c\n@@ -0,0 +1 @@\n+/* a build fix */\n'
    const treeFix = '--- a/init/cvm_treefix.c\n+++ b/init/cvm_treefix.c\n@@ -0,0 +1 @@\n+/* a tree fix */\n'
    const files = {'fixes.yaml': fixes, '6.1/cvm-marker.patch': MARKER, '6.1/build-fix.patch': buildFix, '6.1/tree-fix.patch': treeFix}
    const dirs = await kernelProject({kernelFiles: {...files, '6.1/s.yaml': series('marker-printed')}, series: ['6.1/s.yaml']})

    const control = await runKernelProject(dirs, 'patch', {force: ['patch'], options: {control: true}})
    const cm = control.results.patch!.meta as unknown as PatchResult
    expect(cm.control).toBe(true)
    expect(cm.applied.map((a) => [a.file, a.kind])).toEqual([['6.1/build-fix.patch', 'build-fix'], ['6.1/tree-fix.patch', 'tree-fix']])
    expect(cm.withheld).toEqual([expect.objectContaining({file: '6.1/cvm-marker.patch', kind: 'backport', backports: ['1f221a0d0dbf'], reason: 'control build: only build and tree fixes apply'})])
    expect(existsSync(join(control.results.patch!.dir, 'tree', 'init', 'cvm_buildfix.c'))).toBe(true)
    expect(existsSync(join(control.results.patch!.dir, 'tree', 'init', 'cvm_marker.c'))).toBe(false)

    const full = await runKernelProject(dirs, 'patch', {force: ['patch']})
    const fm = full.results.patch!.meta as unknown as PatchResult
    expect(fm.applied.map((a) => [a.file, a.action, a.reason])).toEqual([
      ['6.1/build-fix.patch', 'applied', 'build fix'],
      ['6.1/tree-fix.patch', 'applied', 'tree fix'],
      ['6.1/cvm-marker.patch', 'applied', 'not in the tree (marker-printed missing)'],
    ])
    // the control's key differs: both results stay cached side by side
    expect(full.results.patch!.key).not.toBe(control.results.patch!.key)

    const wrong = await kernelProject({kernelFiles: {...files, '6.1/s.yaml': series('never-shown')}, series: ['6.1/s.yaml']})
    const err = await runKernelProject(wrong, 'patch', {force: ['patch']}).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InputError)
    expect((err as InputError).message).toMatch(/^patch 6\.1\/s\.yaml: cvm-marker\.patch applied, but the patched tree does not show the fix it claims: never-shown: no line of init\/cvm_marker\.c matches/)
  })
})

describe('configure stage on the real Kconfig of linux-source-6.1', () => {
  it('reports a dropped option with the dependency that is off', async () => {
    const dirs = await kernelProject({features: ['virtio', 'sev-guest'], options: {CONFIG_BLK_DEV: 'n', CONFIG_VIRT_DRIVERS: 'n'}})
    const err = await runKernelProject(dirs, 'configure', {force: ['configure']}).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InputError)
    const text = (err as InputError).render()
    expect(text).toMatch(/dropped by Kconfig: .*CONFIG_VIRTIO_BLK/)
    expect(text).toMatch(/CONFIG_VIRTIO_BLK: wanted y \(virtio\.config\.hbs:\d+\), got n: CONFIG_VIRTIO_BLK depends on "BLK_DEV" \(drivers\/block\/Kconfig:\d+\), which is not met: CONFIG_BLK_DEV=n/)
    // SEV_GUEST sits inside "if VIRT_DRIVERS": the enclosing block is named where it is written
    expect(text).toMatch(/CONFIG_SEV_GUEST: wanted m \(sev-guest\.config\.hbs:\d+\), got n: CONFIG_SEV_GUEST depends on "VIRT_DRIVERS" \(drivers\/virt\/Kconfig:\d+\), which is not met: CONFIG_VIRT_DRIVERS=n/)
  })
})
