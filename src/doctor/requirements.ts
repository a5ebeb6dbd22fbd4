import {DISTRO_MODULES} from '../distro/index.js'
import {FORMATS} from '../formats/table.js'
import {OVMF_CODE, OVMF_CODE_SECBOOT} from '../validate/ovmf-files.js'
import type {ToolRequirement} from './requirement.js'

export type {ToolRequirement} from './requirement.js'

// Data, not code: which host tools each stage runs (docs/design.md); a distro
// family's own tools are in its module (src/distro/), an output format's in its row
// (src/formats/table.ts), and follow these.
const COMMON: ToolRequirement[] = [
  {tool: 'setpriv', package: 'util-linux', stages: ['base', 'kernel-source', 'patch', 'configure', 'compile', 'assemble', 'validate', 'tests'], why: 'every child a stage starts dies with cvm-image (src/util/exec.ts); tests drop root'},
  {tool: 'unshare', package: 'util-linux', stages: ['base', 'kernel-source', 'patch', 'configure', 'compile', 'assemble'], why: 'as root, a stage\'s children get PID and mount namespaces of their own: none outlives the build, no mount is left behind'},
  {tool: 'getfattr', package: 'attr', stages: ['tests'], why: 'read xattrs back in the archive tests'},
  {tool: 'xz', package: 'xz-utils', stages: ['base', 'kernel-source'], why: 'unpack .xz archives'},
  {tool: 'zstd', package: 'zstd', stages: ['base', 'kernel-source'], why: 'unpack .zst archives (kernel tree archives too)'},
  {tool: 'git', package: 'git', stages: ['kernel-source', 'patch'], why: 'fetch upstream commits'},
  {tool: 'rpm2cpio', package: 'rpm2cpio', stages: ['kernel-source', 'configure'], why: 'read a source RPM\'s payload (kernel.source kind srpm)'},
  {tool: 'rpmbuild', package: 'rpm', stages: ['tests'], why: 'make the source RPMs the srpm tests read'},
  {tool: 'patch', package: 'patch', stages: ['patch'], why: 'apply the backport series'},
  {tool: 'make', package: 'build-essential', stages: ['configure', 'compile'], why: 'run kbuild'},
  {tool: 'gcc', package: 'build-essential', stages: ['configure', 'compile', 'validate'], why: 'compile the kernel and the NVMe offset probe'},
  {tool: 'flex', package: 'flex', stages: ['configure'], why: 'build Kconfig'},
  {tool: 'bison', package: 'bison', stages: ['configure'], why: 'build Kconfig'},
  {tool: 'bc', package: 'bc', stages: ['compile'], why: 'kbuild arithmetic'},
  {tool: '/usr/include/libelf.h', package: 'libelf-dev', stages: ['compile'], why: 'objtool'},
  {tool: '/usr/include/openssl/ssl.h', package: 'libssl-dev', stages: ['compile'], why: 'kernel signing tools'},
  {tool: 'cpio', package: 'cpio', stages: ['kernel-source', 'configure', 'compile'], why: 'unpack a source RPM\'s payload without root; kernel headers archive'},
  {tool: 'depmod', package: 'kmod', stages: ['compile'], why: 'module dependency lists'},
  {tool: 'ccache', package: 'ccache', stages: ['compile'], why: 'fast rebuilds'},
  {tool: 'fakeroot', package: 'fakeroot', stages: ['assemble'], why: 'keep ownership without root'},
  {tool: 'mke2fs', package: 'e2fsprogs', stages: ['assemble'], why: 'make the ext4 root from a tree'},
  {tool: 'debugfs', package: 'e2fsprogs', stages: ['base', 'tests'], why: 'read the ext2/3/4 root of a disk image base without root; read the ext4 root back in tests'},
  {tool: 'mkfs.vfat', package: 'dosfstools', stages: ['assemble', 'validate'], why: 'make the ESP and the seed disk'},
  {tool: 'mcopy', package: 'mtools', stages: ['assemble', 'validate'], why: 'write FAT files without mounting'},
  {tool: 'sfdisk', package: 'fdisk', stages: ['base', 'assemble'], why: 'find the root partition of a disk image base; write the GPT'},
  {tool: 'objcopy', package: 'binutils', stages: ['assemble'], why: 'put the UKI together'},
  {tool: '/usr/lib/systemd/boot/efi/linuxx64.efi.stub', package: 'systemd-boot-efi', stages: ['assemble'], why: "systemd's EFI stub for the UKI"},
  {tool: 'qemu-system-x86_64', package: 'qemu-system-x86', stages: ['validate'], why: 'boot the image'},
  {tool: 'bwrap', package: 'bubblewrap', stages: ['base'], why: 'qemu-img converts a qcow2/vmdk base where it can open only that image and its output (src/util/sandbox.ts)'},
  {tool: 'qemu-img', package: 'qemu-utils', stages: ['base', 'validate'], why: 'a qcow2/vmdk base to raw; overlays'},
  {tool: OVMF_CODE, package: 'ovmf', stages: ['validate'], why: 'UEFI firmware'},
  {tool: OVMF_CODE_SECBOOT, package: 'ovmf', stages: ['validate'], why: 'UEFI firmware with SMM, for the Secure Boot boot of a signed UKI'},
  {tool: 'swtpm', package: 'swtpm', stages: ['validate'], why: "the vTPM every boot gets (QEMU's tpm-crb): the tpm-pcrs check compares its PCRs with the predicted ones"},
  {tool: 'socat', package: 'socat', stages: ['validate'], why: "--seed http: QEMU's guestfwd runs it for each guest connection to the seed, relaying it to the seed server's Unix socket (no TCP port)"},
  {tool: 'ssh-keygen', package: 'openssh-client', stages: ['validate'], why: 'the ephemeral guest key'},
  {tool: '/usr/lib/x86_64-linux-gnu/libc.a', package: 'libc6-dev', stages: ['validate'], why: 'build the static NVMe offset probe run in the guest'},
  {tool: 'gpg', package: 'gnupg', stages: ['publish', 'tests'], why: 'sign SHA256SUMS with the release key (SHA256SUMS.gpg) in a temporary GNUPGHOME; tests make keys'},
  {tool: 'gpgconf', package: 'gnupg', stages: ['publish'], why: "stop the temporary GNUPGHOME's gpg-agent before it is removed"},
  {tool: 'gpgv', package: 'gpgv', stages: ['publish'], why: 'check SHA256SUMS.gpg (verify --key; a re-publish keeps a good signature)'},
  {tool: 'mkfs.xfs', package: 'xfsprogs', stages: ['tests'], why: 'a disk whose root is xfs, which the base stage refuses'},
  {tool: '/usr/sbin/sshd', package: 'openssh-server', stages: ['tests'], why: 'the loopback SSH host in tests'},
  {tool: '/usr/lib/systemd/systemd-measure', package: 'systemd', stages: ['tests'], why: "the PCR 11 tests check src/measure/pcr.ts against systemd's own calculation"},
  {tool: 'osslsigncode', package: 'osslsigncode', stages: ['assemble', 'tests'], why: 'sign the UKI for Secure Boot (--signing-key), with the signing time fixed for reproducible bytes; the Authenticode tests check src/measure/authenticode.ts against it'},
  {tool: 'sbverify', package: 'sbsigntool', stages: ['tests'], why: 'the Secure Boot tests check the signed UKI with a verifier apart from the signer; the Authenticode tests check src/measure/authenticode.ts on an unpadded file against it'},
  {tool: 'openssl', package: 'openssl', stages: ['tests'], why: 'a throwaway key and certificate for osslsigncode in the Authenticode tests'},
  {tool: '/usr/bin/docker-registry', package: 'docker-registry', stages: ['tests'], why: 'the real OCI registry (distribution 2.8) the remote stage cache tests push to and pull from'},
  {tool: 'htpasswd', package: 'apache2-utils', stages: ['tests'], why: "the test registry's bcrypt password file (htpasswd -B)"},
  {tool: 'chromium', package: 'chromium', stages: ['tests'], why: 'load the report page (cvm-image report) headless: its DOM and a screenshot'},
  {tool: '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf', package: 'fonts-dejavu-core', stages: ['tests'], why: 'a font for the report page\'s screenshot'},
  {tool: '/usr/bin/redis-server', package: 'redis-server', stages: ['tests'], why: "a team's ccache remote storage (--ccache-remote) in the compile tests, on 127.0.0.1"},
  {tool: '/usr/sbin/iceccd', package: 'icecc', stages: ['tests'], why: "--icecc-scheduler's compile through an icecream farm (icecc, iceccd, icecc-create-env); the icecream test's scheduler and compile host"},
  {tool: '/usr/src/linux-source-6.1.tar.xz', package: 'linux-source-6.1', stages: ['tests'], why: 'the real Kconfig in tests'},
]

export const REQUIREMENTS: ToolRequirement[] = merged([...COMMON, ...Object.values(FORMATS).flatMap((f) => f.tools), ...DISTRO_MODULES.flatMap((m) => m.tools)])

/** One row per tool: a tool several places need gets the union of their stages and each reason once. */
function merged(rows: ToolRequirement[]): ToolRequirement[] {
  const byTool = new Map<string, ToolRequirement>()
  for (const r of rows) {
    const seen = byTool.get(r.tool)
    if (!seen) byTool.set(r.tool, {...r, stages: [...r.stages]})
    else {
      seen.stages = [...new Set([...seen.stages, ...r.stages])]
      if (!seen.why.split('; ').includes(r.why)) seen.why = `${seen.why}; ${r.why}`
    }
  }
  return [...byTool.values()]
}
