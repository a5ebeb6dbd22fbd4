import {withTimeout} from '../util/timeout.js'
import type {CheckContext, Outcome} from './check-types.js'

/** kexec into the same kernel and back: a new boot id, the same release, SSH again. */
export async function kexecRoundTrip(ctx: CheckContext): Promise<Outcome> {
  const g = ctx.guest
  const t = ctx.timeoutMs
  const before = await g.exec(['sh', '-c', 'cat /proc/sys/kernel/random/boot_id; uname -r; command -v kexec || echo no-kexec; ls /boot/vmlinuz-$(uname -r) 2>/dev/null || echo no-vmlinuz'], {timeoutMs: t})
  const [bootId, release, kexecBin, vmlinuz] = before.stdout.trim().split('\n')
  if (kexecBin === 'no-kexec') return {verdict: 'skip', evidence: 'kexec is not installed in the image (package kexec-tools)'}
  let kernel = vmlinuz
  let initrdArg: string[] = []
  if (vmlinuz === 'no-vmlinuz') {
    // the image boots a UKI: kexec its .linux (and .initrd) sections, the very kernel that is running
    if (!ctx.uki.linux) return {verdict: 'fail', evidence: `no /boot/vmlinuz-${release} and the UKI has no .linux section`}
    await g.exec(['mkdir', '-p', '/run/cvm-kexec'], {timeoutMs: t})
    await g.exec(['sh', '-c', 'cat > /run/cvm-kexec/vmlinuz'], {timeoutMs: t, stdin: ctx.uki.linux})
    kernel = '/run/cvm-kexec/vmlinuz'
    if (ctx.uki.initrd?.length) {
      await g.exec(['sh', '-c', 'cat > /run/cvm-kexec/initrd'], {timeoutMs: t, stdin: ctx.uki.initrd})
      initrdArg = ['--initrd=/run/cvm-kexec/initrd']
    }
  }
  let load = await g.exec(['kexec', '-s', '-l', kernel, ...initrdArg, '--reuse-cmdline'], {timeoutMs: t})
  if (load.exitCode !== 0) load = await g.exec(['kexec', '-l', kernel, ...initrdArg, '--reuse-cmdline'], {timeoutMs: t})
  if (load.exitCode !== 0) return {verdict: 'fail', evidence: `kexec -l ${kernel} failed: ${(load.stderr || load.stdout).trim()}`}
  // sync first: kexec -e does not unmount; the root is a throw-away overlay, but the logs should land
  await g.exec(['sync'], {timeoutMs: t})
  let cpusNote = ''
  if (ctx.machine.accel === 'tcg') {
    // under TCG, kexec -e from an SMP guest hung once in two tries at "kexec_core: Starting new kernel"
    // (never with one vCPU): take the secondary CPUs offline first, so the jump starts from one CPU
    const off = await g.exec(['sh', '-c', 'n=0; for c in /sys/devices/system/cpu/cpu[1-9]*/online; do [ -e "$c" ] && echo 0 > "$c" && n=$((n+1)); done; echo $n'], {timeoutMs: t})
    cpusNote = ` (${off.stdout.trim()} secondary CPU(s) taken offline first: TCG)`
  }
  const t0 = Date.now()
  // from kexec -e until SSH answers again the old session is dead
  ctx.machine.leaving('the guest did not come back from kexec')
  g.fire(['kexec', '-e'])
  const again = await ctx.machine.reconnect()
  const after = await again.exec(['sh', '-c', 'cat /proc/sys/kernel/random/boot_id; uname -r; cat /proc/cmdline'], {timeoutMs: t})
  const [bootId2, release2, cmdline2] = after.stdout.trim().split('\n')
  const secs = ((Date.now() - t0) / 1000).toFixed(1)
  if (bootId2 === bootId) return {verdict: 'fail', evidence: `boot id unchanged (${bootId}): kexec -e did not restart the kernel`}
  if (release2 !== release) return {verdict: 'fail', evidence: `kexec came back with ${release2}, not ${release}`}
  if (ctx.forcedSwiotlb && !/swiotlb=force/.test(cmdline2 ?? '')) return {verdict: 'fail', evidence: `after kexec swiotlb=force is gone: ${cmdline2}`}
  return {verdict: 'pass', evidence: `kexec ${kernel}${cpusNote} -> SSH again after ${secs} s; boot_id ${bootId} -> ${bootId2}; uname -r ${release2} both times`}
}

/** poweroff in the guest; QEMU must exit 0 and the serial log end with the kernel's "reboot: Power down". */
export async function powerOff(ctx: CheckContext): Promise<Outcome> {
  ctx.guest.fire(['systemctl', 'poweroff'])
  const code = await withTimeout(ctx.machine.exited, ctx.timeoutMs, 'QEMU to exit after poweroff').catch(() => 'timeout' as const)
  const line = (await ctx.machine.serial()).split('\n').find((l) => /reboot: Power down/.test(l))?.trim()
  if (code === 'timeout') return {verdict: 'fail', evidence: `QEMU still running ${ctx.timeoutMs / 1000} s after poweroff`}
  if (code !== 0) return {verdict: 'fail', evidence: `QEMU exited with ${code} after poweroff: ${ctx.machine.output().trim().split('\n').pop() ?? ''}`}
  if (!line) return {verdict: 'fail', evidence: 'QEMU exited 0 but the serial log has no "reboot: Power down"'}
  return {verdict: 'pass', evidence: `QEMU exited 0; serial: ${line}`}
}
