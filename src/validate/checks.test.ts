import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import {recordedContext, RecordedGuest, type Answer, type Recorded} from '../../test/helpers/recorded-guest.js'
import type {ValidationMode} from '../recipe/schema.js'
import type {Check, CheckRun} from './check-types.js'
import {PROBE_REMOTE_PATH} from './nvme-probe.js'
import {
  bounceOutcome,
  checkCloudInit,
  cloudInitOutcome,
  checkCmdline,
  checkRunningKernel,
  checkMarker,
  checkSecureBoot,
  checkMemoryEncryption,
  checkNetwork,
  checksFor,
  checkSwiotlbActive,
  CHECKS,
  DIRECT_IO_CASES,
  directIoScript,
  nvmeIntegrityOutcome,
  parseDirectIo,
  runChecks,
} from './checks.js'

const okLines = DIRECT_IO_CASES.flatMap((c) => ['/dev/nvme1n1', '/var/tmp/cvm-direct-io.bin'].map((t) => `ok ${t} bs=${c.bs} count=${c.count} off=${c.offset} sha256=ab`))

describe('O_DIRECT integrity and bounce evidence', () => {
  it('passes only when every case read back equal', () => {
    const io = parseDirectIo(['swiotlb nslabs=32768 idle_used=0 hiwater_before=none', ...okLines, 'sampled 134 251', 'hiwater_after=none'].join('\n'))
    expect(nvmeIntegrityOutcome(io).verdict).toBe('pass')
    expect(bounceOutcome(io)).toMatchObject({verdict: 'pass'})
    expect(bounceOutcome(io).evidence).toMatch(/peak 134 over 251 samples/)
  })

  it('fails on one mismatching read-back, naming it', () => {
    const lines = [...okLines.slice(1), 'MISMATCH /dev/nvme1n1 bs=512 count=1 off=3584 want=aa got=bb']
    const o = nvmeIntegrityOutcome(parseDirectIo(lines.join('\n')))
    expect(o.verdict).toBe('fail')
    expect(o.evidence).toMatch(/MISMATCH \/dev\/nvme1n1 bs=512/)
  })

  it('fails when cases did not run (a dd error)', () => {
    expect(nvmeIntegrityOutcome(parseDirectIo(okLines.slice(0, 3).join('\n') + "\ndd: error writing '/dev/nvme1n1': Invalid argument")).verdict).toBe('fail')
  })

  it('bounce counters that never moved fail; a moved hiwater passes', () => {
    expect(bounceOutcome(parseDirectIo('swiotlb nslabs=32768 idle_used=0 hiwater_before=0\nsampled 0 300\nhiwater_after=0')).verdict).toBe('fail')
    expect(bounceOutcome(parseDirectIo('swiotlb nslabs=32768 idle_used=0 hiwater_before=0\nsampled 0 3\nhiwater_after=96')).verdict).toBe('pass')
    expect(bounceOutcome(parseDirectIo('swiotlb nslabs=none idle_used=none hiwater_before=none')).verdict).toBe('fail')
  })

  it('a high-water mark the boot already raised, unmoved by the I/O, fails (6.6+ kernels keep io_tlb_used_hiwater)', () => {
    const still = bounceOutcome(parseDirectIo('swiotlb nslabs=32768 idle_used=0 hiwater_before=210\nsampled 0 300\nhiwater_after=210'))
    expect(still.verdict).toBe('fail')
    expect(still.evidence).toMatch(/io_tlb_used_hiwater 210 -> 210/)
    expect(bounceOutcome(parseDirectIo('swiotlb nslabs=32768 idle_used=0 hiwater_before=210\nsampled 0 300\nhiwater_after=211')).verdict).toBe('pass')
  })
})

// dmesg lines written for these tests in the format each kernel prints (its pr_info strings;
// docs/design.md "What a guest prints"), not recorded from boots: no SEV host is here, and the 6.6
// SNP and TDX lines are made from 6.6's format string.
const LINUX_5_4 = '[    0.000000] Linux version 5.4.0-1036-gcp (buildd@lcy01-amd64-010) (gcc version 7.5.0 (Ubuntu 7.5.0-3ubuntu1~18.04)) #39~18.04.1-Ubuntu SMP Wed Jan 6 19:29:21 UTC 2021 (Ubuntu 5.4.0-1036.39~18.04.1-gcp 5.4.78)'
const LINUX_5_8 = '[    0.000000] Linux version 5.8.0-63-cvm (root@build) (gcc (Ubuntu 9.3.0-17ubuntu1~20.04) 9.3.0, GNU ld (GNU Binutils for Ubuntu) 2.34) #71~20.04.1 SMP Thu Jul 15 17:46:08 UTC 2021'
const LINUX_5_10 = '[    0.000000] Linux version 5.10.218-cvm (root@build) (gcc-10 (Debian 10.2.1-6) 10.2.1 20210110, GNU ld (GNU Binutils for Debian) 2.35.2) #1 SMP Debian 5.10.218-1 (2024-06-01)'
const LINUX_6_1 = '[    0.000000] Linux version 6.1.158-cvm (root@build) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)'
const LINUX_6_6 = '[    0.000000] Linux version 6.6.63-cvm (root@build) (gcc (GCC) 13.2.0, GNU ld (GNU Binutils) 2.41) #1 SMP PREEMPT_DYNAMIC Fri Nov 22 10:00:00 UTC 2024'
const dmesg = (...lines: string[]) => [...lines, '[    0.004000] ACPI: Early table checksum verification disabled', '[    1.502113] nvme nvme0: 2/0/0 default/read/poll queues'].join('\n') + '\n'

const SEV_5_4 = '[    0.189912] AMD Secure Encrypted Virtualization (SEV) active'
const SME_5_4 = '[    0.189912] AMD Secure Memory Encryption (SME) active'
const SEV_5_10 = '[    0.129456] AMD Memory Encryption Features active: SEV'
const SEV_ES_5_10 = '[    0.129456] AMD Memory Encryption Features active: SEV SEV-ES'
const SME_5_10 = '[    0.129456] AMD Memory Encryption Features active: SME'
const SEV_6_1 = '[    0.301877] Memory Encryption Features active: AMD SEV'
const SEV_ES_6_1 = '[    0.301877] Memory Encryption Features active: AMD SEV SEV-ES'
const SNP_6_6 = '[    0.288410] Memory Encryption Features active: AMD SEV SEV-ES SEV-SNP'
const TDX_6_6 = '[    0.288410] Memory Encryption Features active: Intel TDX'

const onlyDmesg = (out: string): Recorded[] => [[/^sh -c dmesg$/, out]]

describe('memory-encryption, on invented dmesg lines in each kernel\'s format, for the mode asked', () => {
  const cases: [string, ValidationMode, string, 'pass' | 'fail' | 'skip', RegExp][] = [
    ['5.4 SEV guest (no "Features" line before 5.10)', 'sev', dmesg(LINUX_5_4, SEV_5_4), 'pass', /AMD Secure Encrypted Virtualization \(SEV\) active/],
    ['5.10 SEV guest', 'sev', dmesg(LINUX_5_10, SEV_5_10), 'pass', /Features active: SEV$/],
    ['5.10 SEV-ES guest', 'sev-es', dmesg(LINUX_5_10, SEV_ES_5_10), 'pass', /SEV SEV-ES/],
    ['5.8 with the SEV-ES backport prints the 5.10 line', 'sev-es', dmesg(LINUX_5_8, SEV_ES_5_10), 'pass', /SEV SEV-ES/],
    ['6.1 SEV guest', 'sev', dmesg(LINUX_6_1, SEV_6_1), 'pass', /active: AMD SEV$/],
    ['6.1 SEV-ES guest', 'sev-es', dmesg(LINUX_6_1, SEV_ES_6_1), 'pass', /AMD SEV SEV-ES$/],
    ['6.6 SNP guest lists SEV-ES too', 'sev-es', dmesg(LINUX_6_6, SNP_6_6), 'pass', /SEV-SNP/],
    ['sev-es asked, 5.4 says only "(SEV) active"', 'sev-es', dmesg(LINUX_5_4, SEV_5_4), 'fail', /^sev-es not listed: .*\(SEV\) active/],
    ['sev-es asked, 5.10 lists only SEV', 'sev-es', dmesg(LINUX_5_10, SEV_5_10), 'fail', /^sev-es not listed: .*active: SEV$/],
    ['sev-es asked, 6.1 lists only SEV', 'sev-es', dmesg(LINUX_6_1, SEV_6_1), 'fail', /^sev-es not listed: .*AMD SEV$/],
    ['sev asked, 5.10 lists only SME', 'sev', dmesg(LINUX_5_10, SME_5_10), 'fail', /^sev not listed: .*SME$/],
    ['sev asked, 6.6 lists only Intel TDX', 'sev', dmesg(LINUX_6_6, TDX_6_6), 'fail', /^sev not listed: .*Intel TDX$/],
    ['sev asked, 5.4 says SME, not SEV', 'sev', dmesg(LINUX_5_4, SME_5_4), 'fail', /^no "Memory Encryption Features active"/],
    ['sev asked, no line at all', 'sev', dmesg(LINUX_6_1), 'fail', /^no "Memory Encryption Features active" \(or, before 5\.10, "Secure Encrypted Virtualization \(SEV\) active"\) line/],
    ['sev-es asked, no line at all', 'sev-es', dmesg(LINUX_5_10), 'fail', /^no "Memory Encryption Features active"/],
    ['6.6 SNP guest', 'snp', dmesg(LINUX_6_6, SNP_6_6), 'pass', /active: AMD SEV SEV-ES SEV-SNP$/],
    ['6.6 TDX guest', 'tdx', dmesg(LINUX_6_6, TDX_6_6), 'pass', /active: Intel TDX$/],
    ['snp asked, 6.1 lists SEV SEV-ES only', 'snp', dmesg(LINUX_6_1, SEV_ES_6_1), 'fail', /^snp not listed: .*AMD SEV SEV-ES$/],
    ['tdx asked, an SNP line', 'tdx', dmesg(LINUX_6_6, SNP_6_6), 'fail', /^tdx not listed: .*SEV-SNP$/],
    ['snp asked, no line at all', 'snp', dmesg(LINUX_6_6), 'fail', /^no "Memory Encryption Features active"/],
    ['emulated: skipped, none printed', 'emulated', dmesg(LINUX_6_1), 'skip', /^emulated mode: .*none printed, as expected/],
    ['emulated: skipped, an SEV line named as unexpected', 'emulated', dmesg(LINUX_6_1, SEV_6_1), 'skip', /unexpected: .*Memory Encryption Features active: AMD SEV/],
  ]
  it.each(cases)('%s (%s): %s', async (_what, mode, out, verdict, evidence) => {
    const o = await checkMemoryEncryption(recordedContext(onlyDmesg(out), {mode, forcedSwiotlb: mode === 'emulated'}))
    expect(o.verdict).toBe(verdict)
    expect(o.evidence).toMatch(evidence)
  })
})

const MAPPED_5_4 = '[    0.621043] software IO TLB: mapped [mem 0xbbfdb000-0xbffdb000] (64MB)'
const BOUNCE_5_4 = '[    2.018821] software IO TLB: Memory encryption is active and system is using DMA bounce buffers'
const MAPPED_5_10 = '[    0.744310] software IO TLB: mapped [mem 0x000000007bfdf000-0x000000007ffdf000] (64MB)'
const MAPPED_6_1 = '[    0.412210] software IO TLB: mapped [mem 0x00000000bbfdf000-0x00000000bffdf000] (64MB)'
const FORCED = 'root=PARTUUID=0a1b2c3d-02 console=tty0 console=ttyS0 rw swiotlb=force'
const PLAIN = 'root=PARTUUID=0a1b2c3d-02 console=tty0 console=ttyS0 rw'
/** what the swiotlb-active script prints: dmesg, then the command line and debugfs' slab count */
const swiotlbOut = (lines: string[], cmdline: string, nslabs: string) => `${dmesg(...lines)}cmdline: ${cmdline}\nnslabs: ${nslabs}\n`
const swiotlbGuest = (out: string): Recorded[] => [['io_tlb_nslabs', out]]

describe('swiotlb-active: the pool, and bounce buffers forced', () => {
  const cases: [string, ValidationMode, string, 'pass' | 'fail', RegExp][] = [
    ['5.10 emulated: the mapped line, swiotlb=force', 'emulated', swiotlbOut([LINUX_5_10, MAPPED_5_10], FORCED, '32768'), 'pass', /^\[ *[\d.]+\] software IO TLB: mapped \[mem .*\(64MB\); \/proc\/cmdline: .*swiotlb=force$/],
    ['6.1 emulated: no mapped line, the debugfs slab count', 'emulated', swiotlbOut([LINUX_6_1], FORCED, '32768'), 'pass', /^\/sys\/kernel\/debug\/swiotlb\/io_tlb_nslabs: 32768 \(64 MiB pool; .*\/proc\/cmdline: .*swiotlb=force$/],
    ['5.4 SEV: the mapped line and the bounce-buffer line', 'sev', swiotlbOut([LINUX_5_4, SEV_5_4, MAPPED_5_4, BOUNCE_5_4], PLAIN, ''), 'pass', /\(64MB\); \[ *[\d.]+\] software IO TLB: Memory encryption is active and system is using DMA bounce buffers$/],
    ['6.1 SEV-ES: the mapped line, bounce buffers forced by memory encryption', 'sev-es', swiotlbOut([LINUX_6_1, SEV_ES_6_1, MAPPED_6_1], PLAIN, '32768'), 'pass', /\(64MB\); bounce buffers forced by memory encryption$/],
    ['emulated: swiotlb=force missing from /proc/cmdline', 'emulated', swiotlbOut([LINUX_5_10, MAPPED_5_10], PLAIN, '32768'), 'fail', /but swiotlb=force is not in \/proc\/cmdline/],
    ['emulated: swiotlb=forced is not swiotlb=force', 'emulated', swiotlbOut([LINUX_6_1], `${PLAIN} swiotlb=forced`, '32768'), 'fail', /but swiotlb=force is not in \/proc\/cmdline/],
    ['no pool: no mapped line, no debugfs slabs', 'emulated', swiotlbOut([LINUX_6_1], FORCED, ''), 'fail', /^no "software IO TLB: mapped" line in dmesg and no SWIOTLB slabs in debugfs/],
    ['SEV, no pool at all', 'sev', swiotlbOut([LINUX_5_10, SEV_5_10], PLAIN, '0'), 'fail', /no SWIOTLB slabs/],
  ]
  it.each(cases)('%s (%s)', async (_what, mode, out, verdict, evidence) => {
    const o = await checkSwiotlbActive(recordedContext(swiotlbGuest(out), {mode, forcedSwiotlb: mode === 'emulated'}))
    expect(o.verdict).toBe(verdict)
    expect(o.evidence).toMatch(evidence)
  })
})

const UNAME_6_1 = `6.1.158-cvm\n${LINUX_6_1.replace(/^\[[^\]]*\] /, '')}\n`
const built = {release: '6.1.158-cvm', version: '#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)', marker: 'cvm-image: series debian-12-cvm applied'}

describe('kernel: the booted kernel is the built one', () => {
  const kernel = (out: string, expected = built) => checkRunningKernel(recordedContext([['uname -r', out]], {expected}))
  it('passes on the built release and version', async () => {
    expect(await kernel(UNAME_6_1)).toEqual({verdict: 'pass', evidence: `uname -r: 6.1.158-cvm; /proc/version: ${LINUX_6_1.replace(/^\[[^\]]*\] /, '')}`})
  })
  it('skips without compile metadata, naming what booted', async () => {
    expect(await kernel(UNAME_6_1, {} as typeof built)).toMatchObject({verdict: 'skip', evidence: expect.stringMatching(/^no compile metadata .*uname -r: 6\.1\.158-cvm/)})
  })
  it('fails on another release (the distro kernel booted)', async () => {
    expect(await kernel(`6.1.0-28-cloud-amd64\nLinux version 6.1.0-28-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)\n`)).toMatchObject({verdict: 'fail', evidence: expect.stringMatching(/^booted 6\.1\.0-28-cloud-amd64, built 6\.1\.158-cvm/)})
  })
  it('fails when /proc/version does not name the release, or lacks the built version', async () => {
    expect(await kernel('6.1.158-cvm\nLinux version 6.1.158 (root@build) #1 SMP\n')).toMatchObject({verdict: 'fail', evidence: expect.stringMatching(/^\/proc\/version does not name 6\.1\.158-cvm/)})
    expect(await kernel('6.1.158-cvm\nLinux version 6.1.158-cvm (root@build) #2 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)\n')).toMatchObject({verdict: 'fail', evidence: expect.stringMatching(/^\/proc\/version lacks the built version/)})
  })
})

describe('marker: the series marker line', () => {
  const marker = (out: string, expected: typeof built | {} = built) => checkMarker(recordedContext(onlyDmesg(out), {expected}))
  it('passes on the marker patch line', async () => {
    expect(await marker(dmesg(LINUX_6_1, '[    0.000000] cvm-image: series debian-12-cvm applied'))).toEqual({verdict: 'pass', evidence: '[    0.000000] cvm-image: series debian-12-cvm applied'})
  })
  it('fails when the line is missing (another series, or the marker patch not applied)', async () => {
    expect(await marker(dmesg(LINUX_5_10, '[    0.000000] cvm-image: series debian-11-cvm applied'))).toEqual({verdict: 'fail', evidence: 'no dmesg line contains "cvm-image: series debian-12-cvm applied"'})
  })
  it('skips when the series has no marker patch', async () => {
    expect((await marker(dmesg(LINUX_6_1), {})).verdict).toBe('skip')
  })
})

const ADDR = '2: enp0s2    inet 10.0.2.15/24 metric 100 brd 10.0.2.255 scope global dynamic enp0s2\\       valid_lft 86313sec preferred_lft 86313sec'
const ROUTE = 'default via 10.0.2.2 dev enp0s2 proto dhcp src 10.0.2.15 metric 100'

describe('network: a global IPv4 address and a default route', () => {
  const network = (out: string) => checkNetwork(recordedContext([['ip -o -4 addr', out]]))
  it('passes with the address (lifetimes cut) and the route', async () => {
    expect(await network(`${ADDR}\n${ROUTE}\n`)).toEqual({verdict: 'pass', evidence: `2: enp0s2 inet 10.0.2.15/24 metric 100 brd 10.0.2.255 scope global dynamic enp0s2; ${ROUTE}`})
  })
  it('fails without an address, or without a default route', async () => {
    expect(await network('')).toMatchObject({verdict: 'fail', evidence: expect.stringMatching(/^no global IPv4 address/)})
    expect(await network(`${ADDR}\n`)).toMatchObject({verdict: 'fail', evidence: expect.stringMatching(/^no default route \(2: enp0s2/)})
  })
})

const DS = 'DataSourceNoCloud [seed=/dev/nvme2n1][dsmode=net]'
/** what the check's one command printed on debian-12 (cloud-init 22.4.2) under TCG: status.json, the separator, result.json */
const CLOUD_INIT_DONE = readFileSync(join(import.meta.dirname, 'testdata', 'cloud-init-22.4-debian-12-done.txt'), 'utf8')
const SEPARATOR = '\n--- cvm-image: result.json ---\n'
const [STATUS_DONE, RESULT_DONE] = CLOUD_INIT_DONE.split(SEPARATOR) as [string, string]
/** the recorded status.json with one stage changed */
const statusWith = (stage: string, change: Record<string, unknown>) => {
  const s = JSON.parse(STATUS_DONE) as {v1: Record<string, Record<string, unknown>>}
  s.v1[stage] = {...s.v1[stage], ...change}
  return JSON.stringify(s)
}

describe('cloud-init: finished, without errors (status.json and result.json read as `cloud-init status` reads them)', () => {
  const cloudInit = (answer: Answer) => checkCloudInit(recordedContext([['cat /run/cloud-init/status.json', answer]]))
  it('passes on the recorded output of a finished debian-12 guest, naming the stages and the datasource', async () => {
    expect(await cloudInit(CLOUD_INIT_DONE)).toEqual({verdict: 'pass', evidence: `done: stages finished: init, init-local, modules-config, modules-final; datasource: ${DS}`})
  })
  it('fails on a stage that logged errors, naming them', async () => {
    const o = cloudInitOutcome(statusWith('modules-config', {errors: ["('ssh', KeyError('ed25519_private'))"]}), RESULT_DONE)
    expect(o).toMatchObject({verdict: 'fail', evidence: expect.stringMatching(/; errors: \["\('ssh', KeyError\('ed25519_private'\)\)"\]$/)})
  })
  it('fails on errors in result.json alone', async () => {
    expect(cloudInitOutcome(STATUS_DONE, JSON.stringify({v1: {datasource: DS, errors: ['module failed']}}))).toMatchObject({verdict: 'fail', evidence: expect.stringMatching(/errors: \["module failed"\]$/)})
  })
  it('names an error once when status.json and result.json both carry it', async () => {
    const e = 'module failed'
    const o = cloudInitOutcome(statusWith('modules-final', {errors: [e]}), JSON.stringify({v1: {datasource: DS, errors: [e]}}))
    expect(o.evidence).toMatch(/errors: \["module failed"\]$/)
  })
  it('fails while a stage has started and not finished, or status.json names a stage running', async () => {
    expect(cloudInitOutcome(statusWith('modules-final', {finished: null}), RESULT_DONE)).toMatchObject({verdict: 'fail', evidence: expect.stringMatching(/^not done: .*still running: modules-final/)})
    const staged = JSON.parse(STATUS_DONE) as {v1: Record<string, unknown>}
    staged.v1.stage = 'modules-final'
    expect(cloudInitOutcome(JSON.stringify(staged), RESULT_DONE)).toMatchObject({verdict: 'fail', evidence: expect.stringMatching(/still running: modules-final/)})
  })
  it('fails when no stage ran', async () => {
    expect(cloudInitOutcome(JSON.stringify({v1: {datasource: null, init: {errors: [], start: null, finished: null}, stage: null}}), RESULT_DONE)).toMatchObject({verdict: 'fail', evidence: expect.stringMatching(/^not done: stages finished: none/)})
  })
  it('passes with recoverable errors (cloud-init 23.4 and later: "degraded done"), counting them', async () => {
    const o = cloudInitOutcome(statusWith('init', {recoverable_errors: {WARNING: ['a deprecated key', 'another']}}), RESULT_DONE)
    expect(o).toMatchObject({verdict: 'pass', evidence: expect.stringMatching(/; 2 recoverable error\(s\) logged$/)})
  })
  it('fails when status.json or result.json is missing, with what cat said', async () => {
    expect(await cloudInit({stdout: `\n--- cvm-image: result.json ---\n${RESULT_DONE}`, stderr: 'cat: /run/cloud-init/status.json: No such file or directory\n', exitCode: 0})).toEqual({
      verdict: 'fail',
      evidence: '/run/cloud-init/status.json missing or unreadable: cat: /run/cloud-init/status.json: No such file or directory',
    })
    expect(cloudInitOutcome(STATUS_DONE, '')).toEqual({verdict: 'fail', evidence: '/run/cloud-init/result.json missing or unreadable'})
  })
})

describe('cmdline (disk boot): the UKI\'s own command line', () => {
  const uki = {cmdline: PLAIN}
  it('passes when /proc/cmdline is the UKI\'s', async () => {
    expect(await checkCmdline(recordedContext([['cat /proc/cmdline', `${uki.cmdline}\n`]], {uki}))).toEqual({verdict: 'pass', evidence: `booted from the disk alone with the UKI's own command line: ${uki.cmdline}`})
  })
  it('fails on another command line (e.g. still swiotlb=force)', async () => {
    expect(await checkCmdline(recordedContext([['cat /proc/cmdline', `${FORCED}\n`]], {uki}))).toMatchObject({verdict: 'fail', evidence: `/proc/cmdline "${FORCED}" is not the UKI's "${uki.cmdline}"`})
  })
})

/** A debian-12 guest (6.1) booted in emulated mode, as it answers every check of a full boot. */
/** the probe's real output on Debian 12's 6.1 under TCG with swiotlb=force (every case intact) */
const PROBE_6_1 = readFileSync(join(import.meta.dirname, 'probe', 'testdata', 'linux-6.1.0-56-cloud-swiotlb-force.txt'), 'utf8')
const PROBE_BINARY = Buffer.from('\x7fELF the static probe')
const probeRun = (out: string, exitCode = 0): Recorded[] => [
  [`cat > ${PROBE_REMOTE_PATH}`, ''],
  [`${PROBE_REMOTE_PATH} --serial cvmscratch`, {exitCode, stdout: out}],
  [`rm -f ${PROBE_REMOTE_PATH}`, ''],
]

const debian12Emulated = (): Recorded[] => [
  ...probeRun(PROBE_6_1),
  ['uname -r; cat /proc/version', UNAME_6_1],
  [/^sh -c dmesg$/, dmesg(LINUX_6_1, '[    0.000000] cvm-image: series debian-12-cvm applied')],
  [directIoScript(), ['swiotlb nslabs=32768 idle_used=0 hiwater_before=none', ...okLines, 'sampled 134 251', 'hiwater_after=none'].join('\n')],
  ['io_tlb_nslabs', swiotlbOut([LINUX_6_1], FORCED, '32768')],
  ['ip -o -4 addr', `${ADDR}\n${ROUTE}\n`],
  ['cat /run/cloud-init/status.json', CLOUD_INIT_DONE],
  ['cat /proc/cmdline', `${PLAIN}\n`],
  ['command -v kexec', '2f1e0c8a-6d0b-4a8e-9d3c-1b2a3c4d5e6f\n6.1.158-cvm\n/usr/sbin/kexec\n/boot/vmlinuz-6.1.158-cvm\n'],
  [/^kexec -s -l /, ''],
  [/^sync$/, ''],
  ['/sys/devices/system/cpu/cpu', '1\n'],
]
const afterKexec = () => new RecordedGuest([['cat /proc/sys/kernel/random/boot_id; uname -r; cat /proc/cmdline', `7c9d1e2f-0a1b-4c3d-8e9f-a0b1c2d3e4f5\n6.1.158-cvm\n${FORCED}\n`]])
const POWER_DOWN = '[   41.028311] reboot: Power down\n'

async function runAll(guest: Recorded[], boot: {mode: ValidationMode; full: boolean}, machine = {afterReconnect: afterKexec() as RecordedGuest | Error, serial: POWER_DOWN}, checks?: readonly Check[], notRun?: Record<string, string>) {
  const ctx = recordedContext(guest, {mode: boot.mode, expected: built, forcedSwiotlb: boot.mode === 'emulated' && boot.full, uki: {cmdline: PLAIN}, machine, probe: PROBE_BINARY})
  const runs: CheckRun[] = []
  await runChecks(ctx, boot, {timeoutMs: 1000, onDone: (r) => runs.push(r), checks, notRun})
  return {runs, ctx, verdicts: runs.map((r) => `${r.name}: ${r.verdict}`)}
}

describe('the check table', () => {
  it('names every check once, in report order; a full boot runs all but cmdline and secure-boot, the disk-alone boot kernel, cmdline, tpm-pcrs, poweroff', () => {
    const names = CHECKS.map((c) => c.name)
    expect(new Set(names).size).toBe(names.length)
    const full = ['kernel', 'tpm-pcrs', 'marker', 'memory-encryption', 'swiotlb-active', 'network', 'nvme-integrity', 'swiotlb-bounce', 'cloud-init', 'kexec', 'poweroff']
    for (const mode of ['emulated', 'sev', 'sev-es'] as const) expect(checksFor({mode, full: true}).map((c) => c.name)).toEqual(full)
    // snp and tdx take an attestation report after the memory-encryption line; snp compares its measurement too
    const attested = (extra: string[]) => [...full.slice(0, 4), ...extra, ...full.slice(4)]
    expect(checksFor({mode: 'snp', full: true}).map((c) => c.name)).toEqual(attested(['attestation-report', 'launch-measurement']))
    expect(checksFor({mode: 'tdx', full: true}).map((c) => c.name)).toEqual(attested(['attestation-report']))
    expect(checksFor({mode: 'emulated', full: false}).map((c) => c.name)).toEqual(['kernel', 'cmdline', 'tpm-pcrs', 'poweroff'])
    expect(checksFor({mode: 'emulated', full: false, secureBoot: true}).map((c) => c.name)).toEqual(['kernel', 'cmdline', 'secure-boot', 'tpm-pcrs', 'poweroff'])
  })

  it('secure-boot: passes on SecureBoot=1 and the kernel\'s "Secure boot enabled"; fails when either says otherwise', async () => {
    // od of the SecureBoot variable as the signed debian-12 guest answered (attributes 6 = BS|RT, then the value)
    const guest = (od: string, dmesg: string) => recordedContext([['od -An -tu1', `${od}\n\n${dmesg}`]], {mode: 'emulated', expected: built, forcedSwiotlb: false, uki: {cmdline: PLAIN}})
    const on = '[    0.000000] secureboot: Secure boot enabled'
    expect(await checkSecureBoot(guest('   6   0   0   0   1', on))).toEqual({verdict: 'pass', evidence: `SecureBoot variable: 1; dmesg: ${on}`})
    expect(await checkSecureBoot(guest('   6   0   0   0   0', '[    0.000000] secureboot: Secure boot disabled'))).toMatchObject({verdict: 'fail', evidence: 'SecureBoot variable: 0; dmesg: [    0.000000] secureboot: Secure boot disabled'})
    expect(await checkSecureBoot(guest('', '[    0.000000] Linux version 6.1.176-cvm'))).toMatchObject({verdict: 'fail', evidence: expect.stringMatching(/^SecureBoot variable: unreadable .*no "Secure boot" line$/)})
    // 5.4 says it from arch/x86/kernel/setup.c, with no "secureboot: " prefix
    const old = '[    0.000000] Secure boot enabled'
    expect(await checkSecureBoot(guest('   6   0   0   0   1', `[    0.000000] Linux version 5.4.59-cvm\n${old}`))).toEqual({verdict: 'pass', evidence: `SecureBoot variable: 1; dmesg: ${old}`})
  })

  it('a full emulated boot of a recorded debian-12 guest: every verdict, the O_DIRECT run shared by nvme-integrity and swiotlb-bounce', async () => {
    const {verdicts, runs, ctx} = await runAll(debian12Emulated(), {mode: 'emulated', full: true})
    expect(verdicts).toEqual([
      'kernel: pass',
      'tpm-pcrs: skip',
      'marker: pass',
      'memory-encryption: skip',
      'swiotlb-active: pass',
      'network: pass',
      'nvme-integrity: pass',
      'swiotlb-bounce: pass',
      'cloud-init: pass',
      'kexec: pass',
      'poweroff: pass',
    ])
    expect(runs.find((r) => r.name === 'swiotlb-bounce')!.evidence).toMatch(/peak 134 over 251 samples/)
    expect(ctx.shared.directIo?.ok).toHaveLength(DIRECT_IO_CASES.length * 2)
    // after kexec the checks talk to the new kernel's session
    expect(ctx.guest).toBe(ctx.machine.current)
    expect((ctx.guest as RecordedGuest).fired).toEqual(['systemctl poweroff'])
  })

  it('a check the caller does not need (kexec in a --control validation) is reported skipped with the reason, and the guest never sees it', async () => {
    const guest = debian12Emulated()
    const first = recordedContext(guest, {mode: 'emulated', expected: built, forcedSwiotlb: true, uki: {cmdline: PLAIN}, machine: {afterReconnect: afterKexec(), serial: POWER_DOWN}, probe: PROBE_BINARY})
    const firstGuest = first.guest as RecordedGuest
    const runs: CheckRun[] = []
    await runChecks(first, {mode: 'emulated', full: true}, {timeoutMs: 1000, onDone: (r) => runs.push(r), notRun: {kexec: 'a control is never published'}})
    expect(runs.find((r) => r.name === 'kexec')).toEqual({name: 'kexec', verdict: 'skip', evidence: 'not run: a control is never published', durationMs: 0})
    expect(runs.find((r) => r.name === 'nvme-integrity')?.verdict).toBe('pass')
    // no kexec command reached the guest, and power-off went to the first session
    expect(firstGuest.commands.filter((c) => /kexec/.test(c))).toEqual([])
    expect(firstGuest.fired).toEqual(['systemctl poweroff'])
    expect(runs.at(-1)).toMatchObject({name: 'poweroff', verdict: 'pass'})
  })

  it('the emulated boot of the disk alone: kernel, the UKI command line, power-off', async () => {
    const {verdicts} = await runAll(debian12Emulated(), {mode: 'emulated', full: false})
    expect(verdicts).toEqual(['kernel: pass', 'cmdline: pass', 'tpm-pcrs: skip', 'poweroff: pass'])
  })

  it('a guest that does not come back from kexec: kexec fails with why, poweroff is skipped', async () => {
    const {runs} = await runAll(debian12Emulated(), {mode: 'emulated', full: true}, {afterReconnect: new Error("the guest's SSH did not answer within 600 s"), serial: POWER_DOWN})
    expect(runs.slice(-2)).toMatchObject([
      {name: 'kexec', verdict: 'fail', evidence: "the guest's SSH did not answer within 600 s"},
      {name: 'poweroff', verdict: 'skip', evidence: 'not run: the guest did not come back from kexec', durationMs: 0},
    ])
  })

  it('the O_DIRECT run failing to complete: nvme-integrity fails, swiotlb-bounce is skipped', async () => {
    const timedOut = new Error('`sh -c "set -u S=/sys/kernel/debug/swiotlb ...` timed out after 600 s in the guest')
    const guest = debian12Emulated().map(([m, a]): Recorded => [m, m === directIoScript() ? timedOut : a])
    const {runs} = await runAll(guest, {mode: 'emulated', full: true})
    expect(runs.find((r) => r.name === 'nvme-integrity')).toMatchObject({verdict: 'fail', evidence: timedOut.message})
    expect(runs.find((r) => r.name === 'swiotlb-bounce')).toMatchObject({verdict: 'skip', evidence: 'the O_DIRECT run did not complete'})
  })

  it('a check that throws fails with its message, one that hangs fails on the time limit; the next still run', async () => {
    const table: Check[] = [
      {name: 'throws', appliesTo: () => true, run: async () => Promise.reject(new Error('ssh: channel open failure'))},
      {name: 'hangs', appliesTo: () => true, run: () => new Promise(() => {})},
      {name: 'only-sev', appliesTo: (b) => b.mode === 'sev', run: async () => ({verdict: 'pass', evidence: 'x'})},
      {name: 'after', appliesTo: () => true, run: async () => ({verdict: 'pass', evidence: 'ran'})},
    ]
    const {runs} = await runAll([], {mode: 'emulated', full: true}, undefined, table)
    expect(runs.map(({durationMs: _, ...r}) => r)).toEqual([
      {name: 'throws', verdict: 'fail', evidence: 'ssh: channel open failure'},
      {name: 'hangs', verdict: 'fail', evidence: 'hangs timed out after 1 s'},
      {name: 'after', verdict: 'pass', evidence: 'ran'},
    ])
  })
})

describe('nvme-integrity and swiotlb-bounce as table entries', () => {
  const entry = (name: string) => CHECKS.find((c) => c.name === name)!
  const ddRun: Recorded = [directIoScript(), ['swiotlb nslabs=32768 idle_used=0 hiwater_before=0', ...okLines, 'sampled 0 300', 'hiwater_after=0'].join('\n')]
  it('nvme-integrity hands the probe to the guest, runs it on the scratch disk, removes it, then runs the O_DIRECT script and keeps its result for swiotlb-bounce', async () => {
    const guest = new RecordedGuest([...probeRun(PROBE_6_1), ddRun])
    const ctx = recordedContext(guest, {probe: PROBE_BINARY})
    const o = await entry('nvme-integrity').run(ctx)
    expect(o).toMatchObject({verdict: 'pass', evidence: expect.stringMatching(/^384\/384 O_DIRECT cases intact on \/dev\/nvme0n1: .*; dd: 16\/16 O_DIRECT/)})
    expect(guest.stdin).toEqual([PROBE_BINARY])
    expect(guest.commands.slice(0, 3)).toEqual([`sh -c cat > ${PROBE_REMOTE_PATH} && chmod 0700 ${PROBE_REMOTE_PATH}`, `${PROBE_REMOTE_PATH} --serial cvmscratch`, `rm -f ${PROBE_REMOTE_PATH}`])
    expect(await entry('swiotlb-bounce').run(ctx)).toMatchObject({verdict: 'fail', evidence: expect.stringMatching(/^bounce counters did not move/)})
  })
  it('nvme-integrity fails on the probe failures even when dd, whose buffers are page-aligned, sees none', async () => {
    const failing = PROBE_6_1.replace(/^SUMMARY layout=contig .*$/m, 'FAIL layout=contig woff=512 roff=1024 size=1024 case=9 kind=write-corrupt kinds=write-corrupt,read-corrupt first=0 want=0x5a got=0x00 ndiff=512\nSUMMARY layout=contig cases=192 ok=191 failed=1 write-error=0 write-corrupt=1 ref-error=0 read-error=0 read-corrupt=1').replace(/^TOTAL .*$/m, 'TOTAL cases=384 ok=383 failed=1 write-error=0 write-corrupt=1 ref-error=0 read-error=0 read-corrupt=1 elapsed_ms=990')
    const o = await entry('nvme-integrity').run(recordedContext([...probeRun(failing, 1), ddRun], {probe: PROBE_BINARY}))
    expect(o.verdict).toBe('fail')
    expect(o.evidence).toMatch(/^1 of 384 O_DIRECT cases from in-page offsets failed \(1 write-side: 1 silent write corruptions.*First: contig woff=512 roff=1024 size=1024: write-corrupt at byte 0 .*; dd \(page-aligned buffers\): all cases match$/)
  })
  it('nvme-integrity without the probe binary fails: a pass from dd alone would prove nothing', async () => {
    const o = await entry('nvme-integrity').run(recordedContext([ddRun]))
    expect(o).toMatchObject({verdict: 'fail', evidence: expect.stringMatching(/^the NVMe offset probe was not run/)})
  })
  it('swiotlb-bounce without an O_DIRECT run is skipped', async () => {
    expect(await entry('swiotlb-bounce').run(recordedContext([]))).toEqual({verdict: 'skip', evidence: 'the O_DIRECT run did not complete'})
  })
})
