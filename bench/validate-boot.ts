// Emulated validation of debian-12 under TCG: boot-to-SSH and whole-validation time.
// Disk: argv[2], else CVM_TEST_DISK, else the pipeline's debian-12 build in the shared test cache.
// `npm run bench -- validate-boot` (add CVM_TEST_KERNEL_JSON=<compile kernel.json> to check the release).
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {GUEST_DEFAULTS, validateImage} from '../src/validate/run.js'
import {repoRoot} from '../test/helpers/paths.js'
import {debian12Disk} from '../test/helpers/validate-disk.js'

const disk = process.argv[2] ?? process.env.CVM_TEST_DISK
const target = disk ? {disk, ...(process.env.CVM_TEST_KERNEL_JSON ? JSON.parse(await readFile(process.env.CVM_TEST_KERNEL_JSON, 'utf8')) : {})} : await debian12Disk()
const out = await mkdtemp(join(tmpdir(), 'cvm-bench-validate-'))
try {
  const t0 = Date.now()
  const r = await validateImage({
    ...GUEST_DEFAULTS,
    disk: target.disk,
    modes: ['emulated'],
    templatesDir: join(repoRoot, 'templates'),
    outDir: out,
    expected: {release: target.release, version: target.version},
    diskBoot: process.env.CVM_BENCH_DISK_BOOT !== '0',
  })
  const wall = (Date.now() - t0) / 1000
  const boots = r.modes.map((m) => `${m.boot} ${((m.bootToSshMs ?? NaN) / 1000).toFixed(1)} s`).join(', ')
  const kexec = r.checks.find((c) => c.name === 'kexec')
  console.log(`disk:                      ${target.disk}`)
  console.log(`boot-to-SSH (TCG):         ${boots}`)
  console.log(`kexec round trip:          ${kexec ? `${(kexec.durationMs / 1000).toFixed(1)} s (${kexec.verdict})` : 'n/a'}`)
  console.log(`whole validation:          ${(r.timings.totalMs / 1000).toFixed(1)} s (wall ${wall.toFixed(1)} s), verdict ${r.verdict}`)
  console.log(`checks:                    ${['pass', 'fail', 'skip'].map((v) => `${r.checks.filter((c) => c.verdict === v).length} ${v}`).join(', ')}`)
  // the time of each check (the boots' checks overlap: their sum is more than the whole)
  for (const c of r.checks) console.log(`  ${c.name.padEnd(32)} ${(c.durationMs / 1000).toFixed(1).padStart(6)} s  ${c.verdict}${c.verdict === 'fail' ? `: ${c.evidence}` : ''}`)
  console.log(`goal (issue #19): the whole validation in at most 60 s; now ${(r.timings.totalMs / 1000).toFixed(1)} s`)
} finally {
  await rm(out, {recursive: true, force: true})
}
