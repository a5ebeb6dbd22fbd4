/**
 * Rootfs transform throughput and peak memory, against GNU tar copying the same tarball
 * (`tar --concatenate --file copy.tar rootfs.tar` onto an empty archive: GNU tar reads every
 * member's header and data and writes them again; it does no checks and no PAX rewriting).
 *
 *   npx tsx bench/assemble-transform.ts [--gib 2.2] [--dir /var/tmp/cvm-bench-transform] [--keep]
 *
 * Generates a synthetic rootfs tarball of at least 2 GiB (a distro-like mix: ~40k small files in
 * nested directories, symlinks, hardlinks, device nodes, an xattr, and a few large files), then
 * runs each tool twice and reports the second (warm page cache) run. Peak memory is the maximum
 * resident set size from /usr/bin/time -v.
 */
import {execFileSync, spawnSync} from 'node:child_process'
import {createWriteStream, existsSync, mkdirSync, rmSync, statSync} from 'node:fs'
import {join, dirname} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {fileURLToPath} from 'node:url'
import {randomBytes} from 'node:crypto'

import tar from 'tar-stream'

const args = process.argv.slice(2)
const flag = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : dflt
}

const here = dirname(fileURLToPath(import.meta.url))
const worker = join(here, 'assemble-transform-worker.ts')

async function generate(file: string, bytes: number): Promise<number> {
  const pack = tar.pack()
  const done = pipeline(pack as unknown as NodeJS.ReadableStream, createWriteStream(file))
  const block = randomBytes(1 << 20)
  const mtime = new Date(1_700_000_000_000)
  let written = 0
  let entries = 0
  const add = (h: Record<string, unknown>, body?: Buffer) =>
    new Promise<void>((resolve, reject) => {
      entries++
      const header = {mode: 0o644, uid: 0, gid: 0, mtime, ...h} as tar.Header
      if (body) pack.entry({...header, size: body.length}, body, (e) => (e ? reject(e) : resolve()))
      else pack.entry(header, (e) => (e ? reject(e) : resolve())).end(undefined)
    })
  await add({name: './', type: 'directory', mode: 0o755})
  await add({name: 'dev/', type: 'directory', mode: 0o755})
  await add({name: 'dev/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3})
  await add({name: 'usr/', type: 'directory', mode: 0o755})
  await add({name: 'lib', type: 'symlink', linkname: 'usr/lib'})
  let i = 0
  // small files: three quarters of the entries, a quarter of the bytes
  while (written < bytes * 0.25) {
    const d = `usr/share/pkg${Math.floor(i / 200)}`
    if (i % 200 === 0) await add({name: `${d}/`, type: 'directory', mode: 0o755})
    const size = 256 + ((i * 7919) % 24_000)
    await add({name: `${d}/file-${i}.txt`, mode: i % 50 === 0 ? 0o4755 : 0o644, uid: i % 13, gid: i % 7}, block.subarray(i % 1000, (i % 1000) + size))
    if (i % 100 === 0) await add({name: `${d}/link-${i}`, type: 'symlink', linkname: `file-${i}.txt`})
    if (i % 150 === 0) await add({name: `${d}/hard-${i}`, type: 'link', linkname: `${d}/file-${i}.txt`})
    written += size
    i++
  }
  await add({name: 'usr/bin/', type: 'directory', mode: 0o755})
  await add({name: 'usr/bin/ping', mode: 0o755, pax: {'SCHILY.xattr.user.bench': 'x'}}, Buffer.from('ping'))
  // large files: the rest, streamed in 1 MiB blocks
  let big = 0
  while (written < bytes) {
    const size = Math.min(200 << 20, bytes - written + (1 << 20))
    await new Promise<void>((resolve, reject) => {
      entries++
      const sink = pack.entry({name: `usr/lib/big-${big++}.bin`, size, mode: 0o644, mtime}, (e) => (e ? reject(e) : resolve()))
      ;(async () => {
        for (let left = size; left > 0; left -= block.length) {
          if (!sink.write(block.subarray(0, Math.min(block.length, left)))) await new Promise<void>((r) => sink.once('drain', () => r()))
        }
        sink.end(undefined)
      })().catch(reject)
    })
    written += size
  }
  pack.finalize()
  await done
  return entries
}

function timed(cmd: string, cmdArgs: string[]): {seconds: number; maxRssKiB: number; stdout: string} {
  const t0 = process.hrtime.bigint()
  const r = spawnSync('/usr/bin/time', ['-v', cmd, ...cmdArgs], {encoding: 'utf8', maxBuffer: 64 << 20})
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`)
  const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)?.[1])
  return {seconds, maxRssKiB: rss, stdout: r.stdout}
}

const dir = flag('dir', '/var/tmp/cvm-bench-transform')
const gib = Number(flag('gib', '2.2'))
mkdirSync(dir, {recursive: true})
const input = join(dir, 'rootfs.tar')
const wanted = Math.round(gib * 1024 ** 3)
if (!existsSync(input) || statSync(input).size < wanted) {
  console.log(`generating ${gib} GiB rootfs tarball at ${input} ...`)
  const entries = await generate(input, wanted)
  console.log(`  ${entries} entries`)
}
const size = statSync(input).size
const mb = size / 1e6
const gnuOut = join(dir, 'gnu-copy.tar')
const ourOut = join(dir, 'transformed.tar')
const node = process.execPath

const runs: Record<string, ReturnType<typeof timed>> = {}
for (let round = 0; round < 2; round++) {
  rmSync(gnuOut, {force: true})
  execFileSync('tar', ['--create', '--file', gnuOut, '--files-from', '/dev/null'])
  runs.gnu = timed('tar', ['--concatenate', '--file', gnuOut, input])
  rmSync(ourOut, {force: true})
  runs.ours = timed(node, ['--import', 'tsx', worker, input, ourOut])
}
const gnuRate = mb / runs.gnu.seconds
const ourRate = mb / runs.ours.seconds
const line = (name: string, r: ReturnType<typeof timed>, rate: number) =>
  `${name.padEnd(34)} ${r.seconds.toFixed(1).padStart(6)} s  ${rate.toFixed(0).padStart(5)} MB/s  peak RSS ${(r.maxRssKiB / 1024).toFixed(0).padStart(5)} MiB`
console.log(`input: ${input} (${(size / 1024 ** 3).toFixed(2)} GiB, ${mb.toFixed(0)} MB)`)
console.log(line('GNU tar copy (tar -A -f out in)', runs.gnu, gnuRate))
console.log(line('cvm-image transformRootfs', runs.ours, ourRate))
console.log(`throughput ratio (transform / GNU tar): ${(ourRate / gnuRate).toFixed(2)}`)
console.log(`transform result: ${runs.ours.stdout.trim()}`)
console.log(`machine: ${execFileSync('nproc').toString().trim()} cores, node ${process.version}, ${execFileSync('tar', ['--version']).toString().split('\n')[0]}`)
if (!args.includes('--keep')) rmSync(dir, {recursive: true, force: true})
