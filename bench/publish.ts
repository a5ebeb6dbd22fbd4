/**
 * Publish figures on this machine: hashing a 1 GiB sparse disk, converting to qcow2 and GCE tar.gz,
 * a first publish to a directory and to SFTP on 127.0.0.1 (a real sshd), an identical re-publish,
 * and SFTP throughput for dense data; with CVM_BENCH_CACHE, debian-12's real release published and
 * re-published through the CLI. Run: npm run bench -- publish
 */
import {randomBytes} from 'node:crypto'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {basename, dirname, join} from 'node:path'

import {rawToGceTarball} from '../src/formats/gce.js'
import {rawToQcow2} from '../src/formats/qcow2.js'
import {publish} from '../src/publish/index.js'
import {connect} from '../src/remote/ssh.js'
import {run} from '../src/util/exec.js'
import {sha256File} from '../src/util/fsx.js'
import {makeBuildRecordFixture} from '../test/helpers/build-record-fixture.js'
import {repoRoot} from '../test/helpers/paths.js'
import {startSshd} from '../test/helpers/sshd.js'

const work = await mkdtemp(join(tmpdir(), 'cvm-bench-publish-'))
const sshd = await startSshd()
const time = async <T>(label: string, f: () => Promise<T>): Promise<T> => {
  const t0 = performance.now()
  const r = await f()
  console.log(`${label.padEnd(58)} ${((performance.now() - t0) / 1000).toFixed(2).padStart(7)} s`)
  return r
}
try {
  const fx = await time('fixture: 1 GiB sparse GPT disk + build record', () => makeBuildRecordFixture(join(work, 'cache')))
  const disk = join(fx.record.stages.assemble!.dir, 'disk.raw')
  await time('sha256 of the 1 GiB sparse disk (node)', () => sha256File(disk))
  await time('qcow2: qemu-img convert', () => rawToQcow2(disk, join(work, 'd.qcow2')))
  await time('GCE: tar --format=oldgnu -S + pigz -n', () => rawToGceTarball(disk, join(work, 'g.tar.gz'), {sourceDateEpoch: 1700000000}))
  // The GCE form against `tar -Sczf` (single-threaded gzip), on a real disk where one is given
  // (CVM_BENCH_DISK=<a built disk.raw>: the fixture's disk holds almost no data to compress)
  const real = process.env.CVM_BENCH_DISK ?? disk
  const plain = await time(`GCE baseline: tar -Sczf (${real === disk ? 'fixture' : real})`, async () => {
    const t0 = performance.now()
    await run('tar', ['-Sczf', join(work, 'baseline.tar.gz'), '-C', dirname(real), basename(real)], {what: 'baseline tar'})
    return (performance.now() - t0) / 1000
  })
  const ours = await time('GCE: rawToGceTarball on the same disk', async () => {
    const t0 = performance.now()
    await rawToGceTarball(real, join(work, 'ours.tar.gz'), {sourceDateEpoch: 1700000000})
    return (performance.now() - t0) / 1000
  })
  console.log(`  GCE tarball speed-up over tar -Sczf: ${(plain / ours).toFixed(2)}x (goal: at least 2x on 2 cores)`)
  const staging = join(work, 'staging')
  const ssh = {hostKey: sshd.hostKeyFingerprint, privateKey: sshd.userKeyPath}
  await time('publish raw+qcow2+gce to dir (first, converts)', () => publish(fx.record, `dir:${join(work, 'out')}`, {stagingDir: staging}))
  await time('publish again to dir (identical: no-op)', () => publish(fx.record, `dir:${join(work, 'out')}`, {stagingDir: staging}))
  const r = await time('publish raw+qcow2+gce to sftp://127.0.0.1 (first)', () => publish(fx.record, `sftp://${sshd.user}@127.0.0.1:${sshd.port}${join(work, 'sftp')}`, {stagingDir: staging, ssh}))
  console.log(`  bytes sent over SFTP: ${r.bytesUploaded}`)
  await time('publish again to sftp (identical: no-op)', () => publish(fx.record, `sftp://${sshd.user}@127.0.0.1:${sshd.port}${join(work, 'sftp')}`, {stagingDir: staging, ssh}))

  // issue #19's goal: an identical re-publish of debian-12's release in at most 1.5 s, every byte
  // proven. CVM_BENCH_CACHE=<a cache holding a debian-12 build> (e.g. the e2e-build bench's
  // BENCH_CACHE) times `cvm-image publish` itself, node's start included, as a user runs it.
  if (process.env.CVM_BENCH_CACHE) {
    const out = join(work, 'release')
    const cliPublish = () => run(process.execPath, [join(repoRoot, 'bin', 'run.js'), 'publish', 'debian-12', '--cache-dir', process.env.CVM_BENCH_CACHE!, '--publish', out, '--json'], {what: 'publish debian-12'})
    await time('debian-12: cvm-image publish (first, to a new directory)', cliPublish)
    const again: number[] = []
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now()
      const res = JSON.parse((await cliPublish()).stdout) as {unchanged: boolean}
      if (!res.unchanged) throw new Error('the re-publish was not identical')
      again.push((performance.now() - t0) / 1000)
    }
    const median = again.sort((a, b) => a - b)[1]!
    console.log(`${'debian-12: identical re-publish (median of 3)'.padEnd(58)} ${median.toFixed(2).padStart(7)} s  (goal: at most 1.5 s; runs ${again.map((x) => x.toFixed(2)).join(', ')})`)
  }

  const dense = join(work, 'dense.bin')
  await writeFile(dense, randomBytes(256 * 1024 * 1024))
  const s = await connect({user: sshd.user, host: '127.0.0.1', port: sshd.port}, ssh)
  const t0 = performance.now()
  await s.upload(dense, join(work, 'dense.remote'), {resume: false})
  const secs = (performance.now() - t0) / 1000
  console.log(`${'SFTP upload of 256 MiB of random data'.padEnd(58)} ${secs.toFixed(2).padStart(7)} s  (${(256 / secs).toFixed(0)} MiB/s)`)
  await time('remote sha256 of 256 MiB over exec (openssl dgst)', () => s.sha256(join(work, 'dense.remote')))
  await time('sha256 of 256 MiB by SFTP read-back', () => s.sha256ByReadBack(join(work, 'dense.remote')))
  await s.close()
} finally {
  await sshd.stop()
  await rm(work, {recursive: true, force: true})
}
