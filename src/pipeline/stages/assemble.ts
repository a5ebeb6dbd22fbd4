import {existsSync, readFileSync, statSync} from 'node:fs'
import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {StageError} from '../../errors.js'
import {kernelCmdline} from '../../disk/cmdline.js'
import {diskIds} from '../../disk/ids.js'
import {planLayout} from '../../disk/gpt.js'
import {assembleDisk} from '../../disk/image.js'
import {readSigningCertificate, type SecureBootSigner} from '../../disk/secure-boot.js'
import {EFI_STUB} from '../../disk/uki.js'
import {distroFor} from '../../distro/index.js'
import {guestTemplatesDigest, renderGuestFiles} from '../../rootfs/guest-files.js'
import {kernelModuleAdditions} from '../../rootfs/kernel-modules.js'
import {readTarFile} from '../../rootfs/scan.js'
import {transformRootfs} from '../../rootfs/transform.js'
import {requireFreeSpace} from '../../util/free-space.js'
import {sha256MemoDir} from '../../util/extent-hash.js'
import {atomicWriteFile, canonicalJson, sha256} from '../../util/fsx.js'
import {toolVersion} from '../../version.js'
import type {BuildContext, StageOf} from '../stage.js'

/** The ESP holds one UKI (tens of MB); 256 MiB keeps FAT32 valid with 512-byte clusters. */
const ESP_MIB = 256
const OS_RELEASE = ['usr/lib/os-release', 'etc/os-release']

/** Everything the disk depends on besides its base and kernel. */
export type AssembleInputs = ReturnType<typeof assembleInputs>

function assembleInputs(ctx: BuildContext) {
  const r = ctx.recipe.recipe
  return {
    recipeId: r.id,
    // written into /etc/cvm-image/build.json on the disk
    name: r.name,
    distro: r.distro,
    sourceDateEpoch: r.source_date_epoch,
    cmdline: r.boot.cmdline,
    image: {
      sizeGiB: r.image.size_gib,
      hostname: r.image.hostname,
      remove: r.image.remove,
      kernelHold: {method: r.image.kernel_hold.method, packages: r.image.kernel_hold.packages},
      allowAbsoluteSymlinks: r.image.allow_absolute_symlinks,
    },
    espMiB: ESP_MIB,
    templates: guestTemplatesDigest(ctx.dirs.templates),
    efiStub: existsSync(EFI_STUB) ? sha256(readFileSync(EFI_STUB)) : null,
    // cvm-image's own version (src/version.ts), whatever --root names: the transform and the disk layout are its code
    tool: toolVersion(),
    // the certificate (public) of the Secure Boot signing key: it names the key, whose signature is then the same bytes every time
    secureBoot: ctx.options.signingCert ? readSigningCertificate(ctx.options.signingCert) : null,
  }
}

export {kernelCmdline} from '../../disk/cmdline.js'

/** base rootfs + built kernel -> GPT disk with a UKI on the ESP and the transformed root on ext4. */
export const assembleStage: StageOf<'assemble', AssembleInputs, 'base' | 'compile'> = {
  name: 'assemble',
  title: 'assemble the disk image',
  code: import.meta.url,
  needs: ['base', 'compile'],
  inputs: assembleInputs,
  async run(io, inputs) {
    const {image} = inputs
    const templatesDir = io.env.dirs.templates
    const {base, compile} = io.upstream
    // the disk (size_gib, counted whole although it is sparse) and the transformed copy of the rootfs, before any work
    const rootfsBytes = statSync(join(base.dir, 'rootfs.tar'), {throwIfNoEntry: false})?.size ?? 0
    await requireFreeSpace(io.work, image.sizeGiB * 1024 ** 3 + rootfsBytes, `assemble's ${image.sizeGiB} GiB disk and its rootfs (image.size_gib)`)
    const kernel = compile.meta
    if (!kernel.release) throw new StageError(`the compile stage's result (${compile.dir}) names no kernel release`)

    // ids derive from everything the disk depends on: same inputs, same bytes; any change, new ids
    const seed = sha256(canonicalJson({inputs, base: base.key, compile: compile.key}))
    const ids = diskIds(seed)
    const layout = planLayout({sizeGiB: image.sizeGiB, espMiB: inputs.espMiB, diskGuid: ids.diskGuid, espPartUuid: ids.espPartUuid, rootPartUuid: ids.rootPartUuid})
    const cmdline = kernelCmdline(ids.rootPartUuid, inputs.cmdline)

    const build = {
      recipe: inputs.recipeId,
      name: inputs.name,
      distro: inputs.distro,
      sourceDateEpoch: inputs.sourceDateEpoch,
      tool: {name: 'cvm-image', version: inputs.tool},
      base: base.meta,
      kernel: {release: kernel.release, version: kernel.version, vmlinuzSha256: kernel.vmlinuzSha256, configDigest: kernel.configDigest, patches: kernel.patches},
      boot: {cmdline, rootPartUuid: ids.rootPartUuid, espPartUuid: ids.espPartUuid, uki: '\\EFI\\BOOT\\BOOTX64.EFI'},
    }
    io.progress('rendering guest files')
    const distro = distroFor(inputs.distro.family)
    const baseTar = join(base.dir, 'rootfs.tar')
    const additions = [
      ...(await kernelModuleAdditions(join(compile.dir, 'modules'))),
      ...renderGuestFiles(templatesDir, {hostname: image.hostname, rootPartUuid: ids.rootPartUuid, espPartUuid: ids.espPartUuid, kernelRelease: kernel.release, build}, distro.guestManifests),
      ...(await distro.kernelHold(image.kernelHold, {kernelRelease: kernel.release, templatesDir, baseFile: (name) => readTarFile(baseTar, name)})),
    ]

    io.progress('transforming the rootfs')
    const rootfsTar = join(io.work, 'rootfs.tar')
    const t = await transformRootfs({
      input: baseTar,
      output: rootfsTar,
      remove: image.remove,
      additions,
      allowAbsoluteSymlinks: image.allowAbsoluteSymlinks,
      sourceDateEpoch: inputs.sourceDateEpoch,
      capture: OS_RELEASE,
    })
    io.log(`rootfs: ${t.entries} entries, ${t.removed} removed, ${t.added} added, ${t.xattrs.length} xattrs`)
    const osRelease = OS_RELEASE.map((n) => t.captured[n]).find(Boolean)
    if (!osRelease) throw new StageError(`the base rootfs has no ${OS_RELEASE.join(' or ')} (a regular file), which the UKI's .osrel section needs`)

    let signer: SecureBootSigner | undefined
    if (inputs.secureBoot) {
      if (!io.env.signingKey) throw new StageError(`this assemble is keyed to sign with ${inputs.secureBoot.subject}, but no signing key was given`, {hint: 'pass --signing-key with --signing-cert'})
      // osslsigncode reads the certificate from a file: the PEM the key holds, in the work dir
      const certFile = join(io.work, 'signing-cert.pem')
      await writeFile(certFile, inputs.secureBoot.pem)
      signer = {keyFile: io.env.signingKey, certFile, passphraseFile: io.env.signingKeyPassphraseFile}
    }
    const {diskSha256, ukiSha256} = await assembleDisk(
      {
        layout,
        rootfsTar,
        xattrs: t.xattrs,
        vmlinuz: join(compile.dir, 'vmlinuz'),
        cmdline,
        osRelease,
        espSerial: ids.espSerial,
        rootFsUuid: ids.rootFsUuid,
        rootHashSeed: ids.rootHashSeed,
        sourceDateEpoch: inputs.sourceDateEpoch,
        work: io.work,
        logFile: io.logFile,
        signal: io.signal,
        signer,
      },
      {disk: join(io.out, 'disk.raw'), uki: join(io.out, 'uki.efi'), sha256MemoDir: sha256MemoDir(io.env.cacheDir)},
      io.progress,
    )
    await atomicWriteFile(join(io.out, 'cmdline.txt'), cmdline + '\n')
    return {
      diskSha256,
      ukiSha256,
      cmdline,
      rootPartUuid: ids.rootPartUuid,
      espPartUuid: ids.espPartUuid,
      diskGuid: ids.diskGuid,
      rootFsUuid: ids.rootFsUuid,
      sizeGiB: image.sizeGiB,
      kernelRelease: kernel.release,
      rootfs: {entries: t.entries, removed: t.removed, added: t.added, xattrs: t.xattrs.length},
      secureBoot: inputs.secureBoot ? {status: 'signed', certificate: inputs.secureBoot} : {status: 'unsigned'},
    }
  },
}
