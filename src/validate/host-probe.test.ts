import {describe, expect, it} from 'vitest'

import {HostError} from '../errors.js'
import {LocalHost} from './host.js'
import {modeSupport, probeHost, requireMode, type HostReport} from './host-probe.js'

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
  qemu: {binary: 'qemu-system-x86_64', version: '8.2.2'},
  ovmf: {code: '/c', vars: '/v', present: true, secureBootCode: true},
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
