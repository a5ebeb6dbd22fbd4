import {describe, expect, it} from 'vitest'

import {dnfReads, zypperLocks} from '../../test/helpers/package-managers.js'
import {InputError} from '../errors.js'
import {rhelModule} from './rhel/index.js'
import {dnfConfWithExclude} from './rhel/dnf-conf.js'
import {slesModule} from './sles/index.js'
import {zyppLocksWith} from './sles/zypp-locks.js'

/**
 * The kernel holds of the RHEL and SUSE modules, each read back by the package manager's own
 * parser: dnf's (libdnf, through Debian's python3-dnf) and zypper's `locks`.
 */

const KERNEL = ['kernel', 'kernel-core', 'kernel-modules']
/** RHEL 8.4's /etc/dnf/dnf.conf as the KVM guest image ships it */
const RHEL8_DNF_CONF = '[main]\ngpgcheck=1\ninstallonly_limit=3\nclean_requirements_on_remove=True\nbest=True\nskip_if_unavailable=False\n'

/** dnf's view of a dnf.conf: [main]'s exclude list and two other options */
const dnfView = (conf: string) => dnfReads(conf, ['excludepkgs', 'gpgcheck', 'installonly_limit'])

describe('dnf-exclude (rhel module): what dnf reads from the edited dnf.conf', () => {
  it("RHEL 8's own dnf.conf gains the exclude list and keeps its options", async () => {
    const out = dnfConfWithExclude(RHEL8_DNF_CONF, KERNEL)
    expect(await dnfView(out)).toEqual({excludepkgs: KERNEL, gpgcheck: true, installonly_limit: 3})
    // the base's lines are all still there
    for (const line of RHEL8_DNF_CONF.trim().split('\n')) expect(out.split('\n')).toContain(line)
  })

  it("an existing exclude (older name, with a continuation line) keeps its packages and gains the kernel's once", async () => {
    const conf = '[main]\ngpgcheck=0\nexclude=foo\n  bar kernel\ninstallonly_limit=5\n'
    expect(await dnfView(conf)).toMatchObject({excludepkgs: ['foo', 'bar', 'kernel']})
    expect(await dnfView(dnfConfWithExclude(conf, KERNEL))).toEqual({excludepkgs: ['foo', 'bar', 'kernel', 'kernel-core', 'kernel-modules'], gpgcheck: false, installonly_limit: 5})
  })

  it('a [main] after another section, and a repo section\'s own exclude left alone', async () => {
    const conf = '[extras]\nexclude=python*\n\n[main]\ngpgcheck=1\n'
    const out = dnfConfWithExclude(conf, KERNEL)
    expect(await dnfView(out)).toMatchObject({excludepkgs: KERNEL})
    expect(out).toContain('[extras]\nexclude=python*\n')
  })

  it('a file without [main], and no file at all', async () => {
    expect(await dnfView(dnfConfWithExclude('# only a comment\n', KERNEL))).toMatchObject({excludepkgs: KERNEL})
    expect(await dnfView(dnfConfWithExclude(undefined, KERNEL))).toMatchObject({excludepkgs: KERNEL})
  })

  it('the module refuses a base without dnf.conf, naming the file and what to do', async () => {
    const hold = rhelModule.kernelHold({method: 'dnf-exclude', packages: KERNEL}, {kernelRelease: '4.18.0-cvm', templatesDir: '/nonexistent', baseFile: async () => undefined})
    await expect(hold).rejects.toBeInstanceOf(InputError)
    await expect(hold).rejects.toThrow(/the base rootfs has no etc\/dnf\/dnf\.conf/)
    expect(await rhelModule.kernelHold({method: 'none', packages: []}, {kernelRelease: 'x', templatesDir: '/nonexistent', baseFile: async () => undefined})).toEqual([])
  })
})

describe('zypper-lock (sles module): what zypper reads from the locks file', () => {
  it('a root without locks gets one zypper lists', async () => {
    expect(await zypperLocks(zyppLocksWith(undefined, ['kernel-default']))).toEqual(['kernel-default'])
    const [file] = await slesModule.kernelHold({method: 'zypper-lock', packages: ['kernel-default', 'kernel-default-base']}, {kernelRelease: 'x', templatesDir: '/nonexistent', baseFile: async () => undefined})
    expect(file).toMatchObject({kind: 'file', name: 'etc/zypp/locks', mode: 0o644})
    expect(await zypperLocks((file as {content: Buffer}).content.toString())).toEqual(['kernel-default', 'kernel-default-base'])
  })

  it("the image's own locks stay, and a kernel it already locks is not locked twice", async () => {
    const own = 'type: package\nmatch_type: exact\ncase_sensitive: on\nsolvable_name: sles-release\n'
    const once = zyppLocksWith(own, ['kernel-default'])
    expect(await zypperLocks(once)).toEqual(['kernel-default', 'sles-release'])
    expect(zyppLocksWith(once, ['kernel-default'])).toBe(once)
  })
})
