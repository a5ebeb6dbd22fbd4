import {execFileSync} from 'node:child_process'
import {copyFile, mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

import {run} from '../../src/util/exec.js'

/**
 * The package managers' own readers, for tests of the kernel holds: dnf's config parser (libdnf,
 * through Debian's python3-dnf) and `zypper locks`; and what the tests need to give them a file:
 * a base rootfs tarball with the distro's files added, a file read from a built disk's root.
 */

/** dnf's values of the named [main] options in a dnf.conf's text (excludepkgs, gpgcheck, ...) */
export async function dnfReads(conf: string, options: string[]): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), 'cvm-dnf-'))
  try {
    await writeFile(join(dir, 'dnf.conf'), conf)
    const py = 'import dnf, json, sys\nc = dnf.conf.Conf()\nc.read(sys.argv[1])\nv = lambda x: x if isinstance(x, (bool, int, float, str)) or x is None else list(x)\nprint(json.dumps({o: v(getattr(c, o)) for o in sys.argv[2:]}))'
    // Debian's python3, where python3-dnf lives (not whatever python3 is first on PATH)
    const r = await run('/usr/bin/python3', ['-c', py, join(dir, 'dnf.conf'), ...options], {what: 'read dnf.conf with dnf'})
    return JSON.parse(r.stdout)
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
}

/** the package names zypper lists as locked in a root whose /etc/zypp/locks has this text (none: no file), sorted */
export async function zypperLocks(locks: string | undefined): Promise<string[]> {
  const root = await mkdtemp(join(tmpdir(), 'cvm-zroot-'))
  try {
    await mkdir(join(root, 'etc/zypp'), {recursive: true})
    if (locks !== undefined) await writeFile(join(root, 'etc/zypp/locks'), locks)
    const r = await run('zypper', ['--non-interactive', '--root', root, 'locks'], {what: 'list the locks with zypper'})
    return [...r.stdout.matchAll(/^\s*\d+\s*\|\s*(\S+)\s*\|/gm)].map((m) => m[1]).sort()
  } finally {
    await rm(root, {recursive: true, force: true})
  }
}

/** A copy of a rootfs tarball with files (root-owned, canonical names such as etc/dnf/dnf.conf) and their own folders appended. */
export async function rootfsWithFiles(baseTar: string, output: string, files: Record<string, string>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cvm-rootfs-files-'))
  try {
    const names = new Set<string>()
    for (const [name, text] of Object.entries(files)) {
      await mkdir(join(dir, dirname(name)), {recursive: true})
      await writeFile(join(dir, name), text)
      // the file's own folder (etc/dnf), which the base lacks; its parents (etc) the base has
      names.add(`./${dirname(name)}`)
      names.add(`./${name}`)
    }
    await copyFile(baseTar, output)
    // folders before their files, as a tarball lists them
    await run('tar', ['--append', '-f', output, '--owner=0', '--group=0', '--numeric-owner', '--mtime=@1700000000', '-C', dir, '--no-recursion', ...[...names].sort()], {what: 'add files to the rootfs tarball'})
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
}

/** A file of a built disk's root (partition 2, ext4), read with debugfs, never mounted. */
export function diskRootFile(disk: string, path: string): string {
  const offset = JSON.parse(execFileSync('sfdisk', ['-J', disk]).toString()).partitiontable.partitions[1].start * 512
  return execFileSync('debugfs', ['-R', `cat ${path}`, `${disk}?offset=${offset}`], {stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 16 << 20}).toString()
}

