import {describe, expect, it} from 'vitest'

import {HostError} from '../errors.js'
import {LocalHost} from './host.js'
import {modeSupport, probeHost, QEMU_MIN_VERSION, requireMode, sevFirmware, type HostReport} from './host-probe.js'

describe('probeHost on this machine (real)', () => {
  it('reports QEMU and OVMF, finds no SEV, and asking for sev fails naming what is missing', async () => {
    const host = new LocalHost()
    try {
      const r = await probeHost(host)
      expect(r.qemu.version).toMatch(/^\d+\.\d+/)
      expect(r.ovmf.present).toBe(true)
      // the suite installs both (doctor --install): the Secure Boot and vTPM boots need them
      expect(r.ovmf.secureBootCode).toBe(true)
      expect(r.swtpm.version).toMatch(/^\d+\.\d+[.\d]*$/)
      expect(r.modes.emulated.available).toBe(true)
      // this machine has no SEV: kvm_amd is not loaded with sev=Y and there is no /dev/sev
      expect(r.modes.sev.available).toBe(false)
      expect(() => requireMode(r, 'sev')).toThrow(HostError)
      try {
        requireMode(r, 'sev')
      } catch (e) {
        const msg = (e as HostError).render()
        expect(msg).toMatch(/validation mode sev cannot run on local/)
        expect(msg).toMatch(/\/dev\/sev/)
        expect(msg).toMatch(/kvm_amd/)
        expect((e as HostError).exitCode).toBe(3)
      }
      expect(() => requireMode(r, 'sev-es')).toThrow(/sev-es cannot run/)
      // nor SNP or TDX: each refusal names the host pieces, and this host's QEMU (Debian 12: 7.2) as too old
      const major = Number(r.qemu.version!.split('.')[0])
      for (const mode of ['snp', 'tdx'] as const) {
        expect(r.modes[mode].available).toBe(false)
        let err: HostError | undefined
        try {
          requireMode(r, mode)
        } catch (e) {
          err = e as HostError
        }
        expect(err).toBeInstanceOf(HostError)
        const msg = err!.render()
        expect(msg).toMatch(new RegExp(`validation mode ${mode} cannot run on local`))
        expect(err!.exitCode).toBe(3)
        if (major < 9) expect(msg).toContain(`QEMU ${QEMU_MIN_VERSION[mode]} or later for ${mode === 'snp' ? 'sev-snp-guest' : 'tdx-guest'} (this host's qemu-system-x86_64 is ${r.qemu.version})`)
        if (mode === 'snp') expect(msg).toMatch(/kvm_amd[\s\S]*\/dev\/sev[\s\S]*SEV firmware with SNP initialised \(no "SEV-SNP API:" line/)
        else expect(msg).toMatch(/the kvm_intel module \(\/sys\/module\/kvm_intel is absent\)|TDX enabled in kvm_intel \(\/sys\/module\/kvm_intel\/parameters\/tdx/)
      }
      // /dev/kvm here is a shim that cannot run OVMF: the probe must not trust it
      if (r.kvm.device) expect(r.kvm.usable).toBe(false)
    } finally {
      await host.cleanup()
    }
  }, 60_000)
})

const sevHost = (over: Partial<HostReport['sev']> = {}): Omit<HostReport, 'modes'> => ({
  host: 'mock-epyc',
  cpuVendor: 'AuthenticAMD',
  kvm: {device: true, usable: true, detail: 'ok'},
  sev: {kvmAmd: {loaded: true, sev: true, sevEs: true, sevSnp: false}, devSev: true, asids: {}, cbitpos: 51, ...over},
  tdx: {kvmIntel: {loaded: false, tdx: false}},
  qemu: {binary: 'qemu-system-x86_64', version: '8.2.2'},
  ovmf: {code: '/c', vars: '/v', present: true, secureBootCode: true, bios: {path: '/b', present: true}},
  swtpm: {binary: 'swtpm', version: '0.7.1'},
})

describe('modeSupport (mock SEV hosts)', () => {
  it('mock: a host with sev and sev_es enabled can run every mode', () => {
    const m = modeSupport(sevHost())
    expect(m.sev.available && m['sev-es'].available && m.emulated.available).toBe(true)
  })

  it('mock: sev without sev_es allows sev only and names the missing parameter for sev-es', () => {
    const m = modeSupport(sevHost({kvmAmd: {loaded: true, sev: true, sevEs: false, sevSnp: false}}))
    expect(m.sev.available).toBe(true)
    expect(m['sev-es'].missing.join()).toMatch(/parameters\/sev_es/)
  })

  it('mock: no /dev/sev and no C-bit position are both named', () => {
    const m = modeSupport(sevHost({devSev: false, cbitpos: undefined}))
    expect(m.sev.missing.join('\n')).toMatch(/\/dev\/sev[\s\S]*C-bit/)
  })
})

const SNP_FW = sevFirmware('[    9.101] ccp 0000:45:00.1: SEV-SNP API:1.55 build:21\n')

describe('modeSupport for snp and tdx (simulated hosts: no SNP or TDX host exists here)', () => {
  it('simulated SNP host: sev_snp=Y, SNP firmware 1.55 and QEMU 9.1 can run snp; QEMU 9.0 is refused naming 9.1', () => {
    const host = {...sevHost({kvmAmd: {loaded: true, sev: true, sevEs: true, sevSnp: true}, firmware: SNP_FW}), qemu: {binary: 'qemu-system-x86_64', version: '9.1.0'}}
    expect(modeSupport(host).snp).toEqual({available: true, missing: []})
    const old = modeSupport({...host, qemu: {binary: 'qemu-system-x86_64', version: '9.0.2'}}).snp
    expect(old.missing).toEqual(["QEMU 9.1 or later for sev-snp-guest (this host's qemu-system-x86_64 is 9.0.2)"])
    // the tdx mode on that AMD host names the CPU and kvm_intel
    expect(modeSupport(host).tdx.missing.join('\n')).toMatch(/an Intel CPU \(this host's CPU vendor is AuthenticAMD\)[\s\S]*kvm_intel module[\s\S]*QEMU 10\.1 or later for tdx-guest/)
  })

  it('simulated SEV-ES host without SNP: every missing SNP piece is named (kvm_amd sev_snp, the firmware as dmesg shows it, QEMU, the -bios image)', () => {
    const host = {...sevHost({firmware: sevFirmware('ccp 0000:45:00.1: SEV API:1.49 build:6')}), ovmf: {code: '/c', vars: '/v', present: true, secureBootCode: true, bios: {path: '/usr/share/ovmf/OVMF.fd', present: false}}}
    const {missing} = modeSupport(host).snp
    expect(missing).toHaveLength(4)
    expect(missing[0]).toMatch(/^SEV-SNP enabled in kvm_amd \(\/sys\/module\/kvm_amd\/parameters\/sev_snp is not Y or 1/)
    expect(missing[1]).toMatch(/^SEV firmware with SNP initialised .*only "SEV API:1\.49 build:6"/)
    expect(missing[2]).toBe("QEMU 9.1 or later for sev-snp-guest (this host's qemu-system-x86_64 is 8.2.2)")
    expect(missing[3]).toMatch(/^OVMF as one image at \/usr\/share\/ovmf\/OVMF\.fd/)
    // SEV-ES itself is still available there
    expect(modeSupport(host)['sev-es'].available).toBe(true)
  })

  it('simulated SNP host with firmware older than SNP API 1.51 is refused naming the firmware line', () => {
    const host = {...sevHost({kvmAmd: {loaded: true, sev: true, sevEs: true, sevSnp: true}, firmware: sevFirmware('SEV-SNP API:1.49 build:3')}), qemu: {binary: 'qemu-system-x86_64', version: '10.0.2'}}
    expect(modeSupport(host).snp.missing).toEqual(['SEV firmware with SNP API 1.51 or later (dmesg: SEV-SNP API:1.49 build:3)'])
  })

  it('simulated TDX host: GenuineIntel, kvm_intel tdx=Y, QEMU 10.1 can run tdx; tdx=N and QEMU 10.0 are both named; the AMD modes name the CPU', () => {
    const intel: Omit<HostReport, 'modes'> = {
      ...sevHost({kvmAmd: {loaded: false, sev: false, sevEs: false, sevSnp: false}, devSev: false, cbitpos: undefined}),
      host: 'simulated-tdx',
      cpuVendor: 'GenuineIntel',
      tdx: {kvmIntel: {loaded: true, tdx: true}},
      qemu: {binary: 'qemu-system-x86_64', version: '10.1.0'},
    }
    expect(modeSupport(intel).tdx).toEqual({available: true, missing: []})
    const off = modeSupport({...intel, tdx: {kvmIntel: {loaded: true, tdx: false}}, qemu: {binary: 'qemu-system-x86_64', version: '10.0.2'}}).tdx.missing
    expect(off).toEqual([
      'TDX enabled in kvm_intel (/sys/module/kvm_intel/parameters/tdx is not Y or 1; a 6.16+ host kernel sets it once the TDX module is initialised)',
      "QEMU 10.1 or later for tdx-guest (this host's qemu-system-x86_64 is 10.0.2)",
    ])
    expect(modeSupport(intel).snp.missing[0]).toBe("an AMD CPU (this host's CPU vendor is GenuineIntel)")
    expect(() => requireMode({...intel, modes: modeSupport({...intel, tdx: {kvmIntel: {loaded: true, tdx: false}}})}, 'tdx')).toThrow(/validation mode tdx cannot run on simulated-tdx: it lacks TDX enabled in kvm_intel/)
  })

  it('sevFirmware reads the ccp driver\'s line, SNP first', () => {
    expect(sevFirmware('ccp: SEV API:1.55 build:21\nccp: SEV-SNP API:1.55 build:21')).toEqual({snp: true, api: '1.55', line: 'SEV-SNP API:1.55 build:21'})
    expect(sevFirmware('no such line')).toBeUndefined()
  })
})
