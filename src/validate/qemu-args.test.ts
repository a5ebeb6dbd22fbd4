import {describe, expect, it} from 'vitest'

import {after, QEMU_BASE} from '../../test/helpers/qemu-spec.js'
import {buildQemuArgs} from './qemu-args.js'

const base = QEMU_BASE

describe('buildQemuArgs', () => {
  it('emulated: q35 under TCG, OVMF code read-only, the disk on NVMe with writes to a snapshot, hostfwd on 127.0.0.1', () => {
    const argv = buildQemuArgs({...base, kernel: {path: '/w/uki.efi', append: 'root=PARTUUID=x console=ttyS0 swiotlb=force'}})
    expect(after(argv, '-machine')).toEqual(['q35'])
    expect(after(argv, '-accel')).toEqual(['tcg'])
    expect(argv).not.toContain('-object')
    expect(after(argv, '-drive')).toEqual([
      'if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd',
      'if=pflash,format=raw,unit=1,file=/w/OVMF_VARS.fd',
      'file=/img/disk.raw,format=raw,if=none,id=disk0,snapshot=on',
    ])
    expect(after(argv, '-device')).toEqual(['nvme,drive=disk0,serial=cvmroot', 'virtio-net-pci,netdev=net0', 'virtio-rng-pci'])
    expect(after(argv, '-netdev')).toEqual(['user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22'])
    expect(after(argv, '-append')).toEqual(['root=PARTUUID=x console=ttyS0 swiotlb=force'])
    expect(after(argv, '-serial')).toEqual(['file:/w/serial.log'])
  })

  it('sev: the documented form, confidential-guest-support=sev0 and sev-guest with cbitpos, reduced-phys-bits=1, policy=0x1', () => {
    const argv = buildQemuArgs({...base, mode: 'sev', accel: 'kvm', cbitpos: 51})
    expect(after(argv, '-machine')).toEqual(['q35,confidential-guest-support=sev0'])
    expect(after(argv, '-object')).toEqual(['sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x1'])
    expect(after(argv, '-accel')).toEqual(['kvm'])
  })

  it('sev-es: policy 0x5 (NODBG + ES)', () => {
    const argv = buildQemuArgs({...base, mode: 'sev-es', accel: 'kvm', cbitpos: 47})
    expect(after(argv, '-object')).toEqual(['sev-guest,id=sev0,cbitpos=47,reduced-phys-bits=1,policy=0x5'])
    expect(argv).toContain('-no-reboot')
  })

  it('snp: sev-snp-guest with cbitpos, reduced-phys-bits=1 and policy 0x30000, ONE firmware image as -bios and no pflash', () => {
    const argv = buildQemuArgs({...base, mode: 'snp', accel: 'kvm', cbitpos: 51, firmware: {bios: '/usr/share/ovmf/OVMF.fd'}})
    expect(after(argv, '-machine')).toEqual(['q35,confidential-guest-support=sev0'])
    expect(after(argv, '-object')).toEqual(['sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000'])
    expect(after(argv, '-bios')).toEqual(['/usr/share/ovmf/OVMF.fd'])
    expect(after(argv, '-drive').filter((d) => d.includes('pflash'))).toEqual([])
    expect(after(argv, '-cpu')).toEqual(['host'])
  })

  it('tdx: tdx-guest, q35 with kernel-irqchip=split and confidential-guest-support=tdx0, -bios; no C-bit needed', () => {
    const argv = buildQemuArgs({...base, mode: 'tdx', accel: 'kvm', firmware: {bios: '/usr/share/ovmf/OVMF.fd'}})
    expect(after(argv, '-machine')).toEqual(['q35,kernel-irqchip=split,confidential-guest-support=tdx0'])
    expect(after(argv, '-object')).toEqual(['tdx-guest,id=tdx0'])
    expect(after(argv, '-bios')).toEqual(['/usr/share/ovmf/OVMF.fd'])
    expect(argv.join(' ')).not.toMatch(/pflash|sev/)
  })

  it('snp and tdx take -bios only, the other modes the pflash pair only; snp needs the C-bit, TCG runs neither', () => {
    expect(() => buildQemuArgs({...base, mode: 'snp', accel: 'kvm', cbitpos: 51})).toThrow(/mode snp boots one firmware image as -bios/)
    expect(() => buildQemuArgs({...base, mode: 'tdx', accel: 'kvm'})).toThrow(/mode tdx boots one firmware image as -bios/)
    expect(() => buildQemuArgs({...base, mode: 'sev', accel: 'kvm', cbitpos: 51, firmware: {bios: '/b'}})).toThrow(/mode sev boots the OVMF code and variable store as pflash/)
    expect(() => buildQemuArgs({...base, mode: 'snp', accel: 'kvm', firmware: {bios: '/b'}})).toThrow(/C-bit/)
    expect(() => buildQemuArgs({...base, mode: 'tdx', accel: 'tcg', firmware: {bios: '/b'}})).toThrow(/needs KVM/)
  })

  it('refuses SEV under TCG and SEV without a C-bit position', () => {
    expect(() => buildQemuArgs({...base, mode: 'sev', accel: 'tcg', cbitpos: 51})).toThrow(/needs KVM/)
    expect(() => buildQemuArgs({...base, mode: 'sev-es', accel: 'kvm'})).toThrow(/C-bit/)
  })

  it('the NoCloudNet SMBIOS serial keeps its semicolons and doubles commas for QEMU', () => {
    const argv = buildQemuArgs({...base, smbiosSerial: 'ds=nocloud-net;s=http://10.0.2.2:8000/'})
    expect(after(argv, '-smbios')).toEqual(['type=1,serial=ds=nocloud-net;s=http://10.0.2.2:8000/'])
  })

  it('guestForward: the guest\'s connections to an address handed to a command (guestfwd=...-cmd:), no host port; a word QEMU would split is refused', () => {
    const argv = buildQemuArgs({...base, guestForward: {address: '10.0.2.100', port: 80, command: ['socat', 'STDIO', 'UNIX-CONNECT:/tmp/cvm-seed-x/seed.sock']}})
    expect(after(argv, '-netdev')).toEqual(['user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22,guestfwd=tcp:10.0.2.100:80-cmd:socat STDIO UNIX-CONNECT:/tmp/cvm-seed-x/seed.sock'])
    for (const word of ['UNIX-CONNECT:/tmp/a b/seed.sock', 'x,y', "it's"]) expect(() => buildQemuArgs({...base, guestForward: {address: '10.0.2.100', port: 80, command: ['socat', word]}})).toThrow(/guestfwd command word/)
  })

  it('secure boot: q35 with SMM, the flash writable from SMM only, the SMM firmware; refused outside emulated mode', () => {
    const argv = buildQemuArgs({...base, firmware: {code: '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd', vars: '/w/OVMF_VARS.fd', secureBoot: true}})
    expect(after(argv, '-machine')).toEqual(['q35,smm=on'])
    expect(after(argv, '-global')).toEqual(['driver=cfi.pflash01,property=secure,value=on'])
    expect(after(argv, '-drive').slice(0, 2)).toEqual(['if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd', 'if=pflash,format=raw,unit=1,file=/w/OVMF_VARS.fd'])
    expect(after(buildQemuArgs(base), '-global')).toEqual([])
    expect(() => buildQemuArgs({...base, mode: 'sev', accel: 'kvm', cbitpos: 51, firmware: {...base.firmware, secureBoot: true}})).toThrow(/emulated only/)
  })
})
