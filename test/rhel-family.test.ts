import {execFileSync} from 'node:child_process'
import {cpSync, mkdtempSync, writeFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {sha256File} from '../src/util/fsx.js'
import {patchResult, seriesBackports} from './helpers/backport.js'
import {cli} from './helpers/cli.js'
import {repoRoot, sharedTestCache} from './helpers/paths.js'
import {diskRootFile, dnfReads, rootfsWithFiles} from './helpers/package-managers.js'
import {buildUntil} from './helpers/pipeline.js'
import {el8KernelSrpm, EL8_SRPM} from './helpers/srpm.js'

/**
 * A RHEL-family build through the CLI, end to end: the rhel module takes CentOS 8.1's kernel in
 * the form RHEL ships it (a source RPM, made here with rpmbuild from the 4.18.0-147.5.1.el8 tree),
 * the 4.18 series backports the SWIOTLB fixes, and the image holds the kernel with dnf's exclude
 * list. No RHEL image can be had here, so the base is Debian 11's rootfs carrying RHEL 8's
 * dnf.conf: the userland is not what this proves, the RHEL path of the kernel and the hold are.
 * It is also CI's proof of kernels/4.18's series on that tree: NVMe integrity through SWIOTLB.
 */

const RHEL8_DNF_CONF = '[main]\ngpgcheck=1\ninstallonly_limit=3\nclean_requirements_on_remove=True\nbest=True\nskip_if_unavailable=False\n'
const KERNEL_PACKAGES = ['kernel', 'kernel-core', 'kernel-modules']

interface Check {
  name: string
  verdict: string
  evidence: string
}
interface BuildJson {
  stages: {stage: string; status: string; dir: string}[]
  validation?: {verdict: string; checks: Check[]}
}

let root: string
let baseTar: string
let srpm: {file: string; sha256: string}

beforeAll(async () => {
  srpm = await el8KernelSrpm()
  // Debian 11's rootfs (the userland the 4.18 proving recipe boots), from the shared test cache
  const base = (await buildUntil('debian-11', 'base')).results.base!
  root = mkdtempSync(join(sharedTestCache(), 'rhel-family-'))
  for (const d of ['recipes', 'kernels', 'templates']) cpSync(join(repoRoot, d), join(root, d), {recursive: true})
  baseTar = join(root, 'rootfs.tar')
  await rootfsWithFiles(join(base.dir, 'rootfs.tar'), baseTar, {'etc/dnf/dnf.conf': RHEL8_DNF_CONF})
  writeFileSync(join(root, 'recipes', 'rhel-proof.yaml'), `extends: _rhel
name: RHEL-family proof (${EL8_SRPM} on a Debian 11 rootfs with RHEL 8's dnf.conf)
status: buildable-here
distro: {family: rhel, release: "8.1", kernel: 4.18.0-147.5.1.el8}
base: {kind: image, url: "file:///fixture/rootfs.tar", sha256: "${await sha256File(baseTar)}", format: tar}
kernel:
  line: "4.18"
  upstream_version: "4.18.0"
  source: {kind: srpm, url: "file:///fixture/${EL8_SRPM}", sha256: "${srpm.sha256}"}
  series: [4.18/series.yaml]
  config:
    # gvnic (GVE) is mainline 5.3: this 4.18 does not have it
    features: [efi-stub, sev, swiotlb, nvme, virtio, kexec, kdump, vtpm]
image:
  # Debian 11's kernel files (the base's userland), and the ssh host keys
  remove: [boot/vmlinuz-*, boot/initrd.img-*, boot/System.map-*, boot/config-*, vmlinuz, vmlinuz.old, initrd.img, initrd.img.old, lib/modules/*, usr/lib/modules/*, etc/ssh/ssh_host_*]
`)
}, 1_800_000)
afterAll(async () => {
  if (root) await rm(root, {recursive: true, force: true})
})

describe('a RHEL-family recipe, built and validated through the CLI', () => {
  it('the source RPM\'s tree with the 4.18 backports passes every check, NVMe integrity through SWIOTLB included, and dnf holds the kernel', async () => {
    const r = await cli(['build', 'rhel-proof', '--root', root, '--cache-dir', sharedTestCache(), '--base-file', baseTar, '--kernel-source-file', srpm.file, '--no-publish', '--json'], {cwd: root, timeoutMs: 55 * 60_000})
    expect(r.code, `${r.stderr.slice(-3000)}\n${r.stdout.slice(-2000)}`).toBe(0)
    const b = JSON.parse(r.stdout) as BuildJson
    const failed = b.validation!.checks.filter((c) => c.verdict === 'fail')
    expect(failed, JSON.stringify(failed, null, 2)).toEqual([])
    const c = Object.fromEntries(b.validation!.checks.map((x) => [x.name, x]))
    expect(c.kernel.evidence).toMatch(/uname -r: 4\.18\.0-cvm/)
    expect(c['nvme-integrity'].verdict).toBe('pass')
    expect(c['nvme-integrity'].evidence).toMatch(/384\/384/)

    // the kernel came from the source RPM, through the rhel module
    const dir = (stage: string) => b.stages.find((s) => s.stage === stage)!.dir
    // and the 4.18 series' backports were applied to it, none skipped as already present: a tree
    // that carried the fixes already would pass the checks above without them
    const patch = patchResult(b)
    expect(patch.skipped).toEqual([])
    expect(patch.applied.filter((e) => e.kind === 'backport').map((e) => e.file)).toEqual(await seriesBackports('4.18'))
    const source = JSON.parse(execFileSync('cat', [join(dir('kernel-source'), 'result.json')]).toString())
    expect(source).toMatchObject({kind: 'srpm', digest: srpm.sha256, package: EL8_SRPM})

    // dnf, reading the disk's dnf.conf with its own parser, excludes the kernel packages; RHEL's options stay
    const disk = join(dir('assemble'), 'disk.raw')
    expect(await dnfReads(diskRootFile(disk, '/etc/dnf/dnf.conf'), ['excludepkgs', 'installonly_limit'])).toEqual({excludepkgs: KERNEL_PACKAGES, installonly_limit: 3})
  }, 60 * 60_000)
})
