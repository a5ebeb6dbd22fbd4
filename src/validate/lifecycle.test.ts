import {describe, expect, it} from 'vitest'

import {recordedContext, RecordedGuest, type Recorded, type RecordedMachineOptions} from '../../test/helpers/recorded-guest.js'
import {kexecRoundTrip, powerOff} from './lifecycle.js'

const BOOT_ID = '2f1e0c8a-6d0b-4a8e-9d3c-1b2a3c4d5e6f'
const NEW_BOOT_ID = '7c9d1e2f-0a1b-4c3d-8e9f-a0b1c2d3e4f5'
const RELEASE = '6.1.158-cvm'
const FORCED = 'root=PARTUUID=0a1b2c3d-02 console=tty0 console=ttyS0 rw swiotlb=force'

/** the guest before kexec -e: boot id, release, kexec binary, /boot/vmlinuz-<release> (or the "no-" markers) */
const before = (kexec = '/usr/sbin/kexec', vmlinuz = `/boot/vmlinuz-${RELEASE}`): Recorded => ['command -v kexec', `${BOOT_ID}\n${RELEASE}\n${kexec}\n${vmlinuz}\n`]
const loads: Recorded[] = [[/^kexec -s -l /, ''], [/^sync$/, ''], ['/sys/devices/system/cpu/cpu', '1\n']]
/** the guest after kexec, as the new session sees it */
const after = (bootId = NEW_BOOT_ID, release = RELEASE, cmdline = FORCED) => new RecordedGuest([['cat /proc/sys/kernel/random/boot_id; uname -r; cat /proc/cmdline', `${bootId}\n${release}\n${cmdline}\n`]])

function kexec(guest: Recorded[], machine: RecordedMachineOptions = {afterReconnect: after()}, uki?: {linux?: Buffer; initrd?: Buffer}) {
  const ctx = recordedContext(guest, {machine, uki: {cmdline: FORCED, ...uki}})
  const old = ctx.guest as RecordedGuest
  return {ctx, old, outcome: kexecRoundTrip(ctx)}
}

describe('kexec: into the same kernel and back', () => {
  it('passes: new boot id, same release, swiotlb=force kept; under TCG the secondary CPUs go offline first', async () => {
    const {ctx, old, outcome} = kexec([before(), ...loads])
    const o = await outcome
    expect(o.verdict).toBe('pass')
    expect(o.evidence).toMatch(new RegExp(`^kexec /boot/vmlinuz-${RELEASE} \\(1 secondary CPU\\(s\\) taken offline first: TCG\\) -> SSH again after [\\d.]+ s; boot_id ${BOOT_ID} -> ${NEW_BOOT_ID}; uname -r ${RELEASE} both times$`))
    expect(old.commands).toContain(`kexec -s -l /boot/vmlinuz-${RELEASE} --reuse-cmdline`)
    expect(old.fired).toEqual(['kexec -e'])
    expect(ctx.machine.gone).toBeUndefined()
    expect(ctx.guest).not.toBe(old)
  })

  it('a recorded guest whose machine says KVM (none here): every CPU stays online', async () => {
    const {old, outcome} = kexec([before(), ...loads], {accel: 'kvm', afterReconnect: after()})
    expect((await outcome).evidence).not.toMatch(/offline/)
    expect(old.commands.some((c) => c.includes('/sys/devices/system/cpu'))).toBe(false)
  })

  it('an image without /boot/vmlinuz-<release> (UKI only): the UKI\'s .linux and .initrd are sent and loaded', async () => {
    const linux = Buffer.from('MZ linux')
    const initrd = Buffer.from('070701 initrd')
    const {old, outcome} = kexec([before(undefined, 'no-vmlinuz'), ['mkdir -p /run/cvm-kexec', ''], ['cat > /run/cvm-kexec/', ''], ...loads], undefined, {linux, initrd})
    expect((await outcome).verdict).toBe('pass')
    expect(old.stdin).toEqual([linux, initrd])
    expect(old.commands).toContain('kexec -s -l /run/cvm-kexec/vmlinuz --initrd=/run/cvm-kexec/initrd --reuse-cmdline')
  })

  it('falls back to kexec -l when kexec_file_load (-s) is refused', async () => {
    const {old, outcome} = kexec([before(), [/^kexec -s -l /, {exitCode: 1, stderr: 'kexec_file_load failed: Operation not permitted'}], [/^kexec -l /, ''], ...loads])
    expect((await outcome).verdict).toBe('pass')
    expect(old.commands).toContain(`kexec -l /boot/vmlinuz-${RELEASE} --reuse-cmdline`)
  })

  it('skips when kexec-tools is not installed', async () => {
    expect(await kexec([before('no-kexec')]).outcome).toEqual({verdict: 'skip', evidence: 'kexec is not installed in the image (package kexec-tools)'})
  })

  it('fails without a kernel to load: no /boot/vmlinuz and no .linux in the UKI', async () => {
    expect(await kexec([before(undefined, 'no-vmlinuz')]).outcome).toEqual({verdict: 'fail', evidence: `no /boot/vmlinuz-${RELEASE} and the UKI has no .linux section`})
  })

  it('fails when neither kexec -s -l nor kexec -l loads the kernel, and the guest stays', async () => {
    const {ctx, outcome} = kexec([before(), [/^kexec /, {exitCode: 1, stderr: 'Cannot determine the file type of /boot/vmlinuz-6.1.158-cvm\n'}]])
    expect(await outcome).toEqual({verdict: 'fail', evidence: `kexec -l /boot/vmlinuz-${RELEASE} failed: Cannot determine the file type of /boot/vmlinuz-6.1.158-cvm`})
    expect(ctx.machine.gone).toBeUndefined()
  })

  it('fails when the boot id did not change, another release came back, or swiotlb=force was lost', async () => {
    expect(await kexec([before(), ...loads], {afterReconnect: after(BOOT_ID)}).outcome).toEqual({verdict: 'fail', evidence: `boot id unchanged (${BOOT_ID}): kexec -e did not restart the kernel`})
    expect(await kexec([before(), ...loads], {afterReconnect: after(NEW_BOOT_ID, '6.1.0-28-cloud-amd64')}).outcome).toEqual({verdict: 'fail', evidence: `kexec came back with 6.1.0-28-cloud-amd64, not ${RELEASE}`})
    const plain = FORCED.replace(' swiotlb=force', '')
    expect(await kexec([before(), ...loads], {afterReconnect: after(NEW_BOOT_ID, RELEASE, plain)}).outcome).toEqual({verdict: 'fail', evidence: `after kexec swiotlb=force is gone: ${plain}`})
  })

  it('a guest that never answers again: the check throws, and the guest stays gone', async () => {
    const {ctx, outcome} = kexec([before(), ...loads], {afterReconnect: new Error("the guest's SSH did not answer within 600 s")})
    await expect(outcome).rejects.toThrow(/did not answer within 600 s/)
    expect(ctx.machine.gone).toBe('the guest did not come back from kexec')
  })
})

describe('poweroff: QEMU exits 0 after the kernel\'s "reboot: Power down"', () => {
  const SERIAL = '[  OK  ] Reached target poweroff.target - System Power Off.\n[   41.028311] reboot: Power down\n'
  const power = (machine: RecordedMachineOptions) => {
    const ctx = recordedContext([], {machine, timeoutMs: 50})
    return {ctx, outcome: powerOff(ctx)}
  }
  it('passes, quoting the serial line', async () => {
    const {ctx, outcome} = power({exitCode: 0, serial: SERIAL})
    expect(await outcome).toEqual({verdict: 'pass', evidence: 'QEMU exited 0; serial: [   41.028311] reboot: Power down'})
    expect((ctx.guest as RecordedGuest).fired).toEqual(['systemctl poweroff'])
  })
  it('fails when QEMU exits 0 without the kernel powering down (a reset, a crash with -no-reboot)', async () => {
    expect(await power({exitCode: 0, serial: '[   12.0] Kernel panic - not syncing: Fatal exception\n'}).outcome).toEqual({verdict: 'fail', evidence: 'QEMU exited 0 but the serial log has no "reboot: Power down"'})
  })
  it('fails when QEMU exits non-zero, with its last line', async () => {
    expect(await power({exitCode: 1, serial: SERIAL, output: 'qemu-system-x86_64: terminating on signal 15\nqemu-system-x86_64: sev_launch_finish: LAUNCH_FINISH ret=-5\n'}).outcome).toEqual({
      verdict: 'fail',
      evidence: 'QEMU exited with 1 after poweroff: qemu-system-x86_64: sev_launch_finish: LAUNCH_FINISH ret=-5',
    })
  })
  it('fails when QEMU keeps running', async () => {
    expect(await power({exitCode: 'running'}).outcome).toEqual({verdict: 'fail', evidence: 'QEMU still running 0.05 s after poweroff'})
  })
})
