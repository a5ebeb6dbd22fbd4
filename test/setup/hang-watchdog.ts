import {Worker} from 'node:worker_threads'

// No vitest import here: a test runs this module in a child process of its own (test/setup/file-cpu.test.ts).

/**
 * The watchdog thread. It runs on its own event loop, so it sees the main thread's heartbeat stop.
 * Then it writes a report (the test in force, the main thread's wait channel and system call, and
 * its native stack when gdb is there) to stderr and to `reportFile`, and kills the process with
 * SIGKILL: vitest then fails the file ("Worker exited unexpectedly") and the run goes on.
 */
const WATCHDOG = `
const {parentPort, workerData} = require('node:worker_threads')
const {readFileSync, writeFileSync, writeSync} = require('node:fs')
const {execFileSync} = require('node:child_process')
const beat = new Int32Array(workerData.beat)
let label = workerData.label
parentPort.on('message', (m) => { label = m })
const read = (f) => { try { return readFileSync(f, 'utf8').trim() } catch (e) { return '(' + e.code + ')' } }
const timer = setInterval(() => {
  const silent = Math.floor(Date.now() / 1000) - Atomics.load(beat, 0)
  if (silent < workerData.limitSeconds) return
  clearInterval(timer)
  const pid = process.pid
  const lines = [
    'cvm-image test watchdog: ' + workerData.file + ': the event loop of its process (pid ' + pid + ') has not run for ' + silent + ' s, ' + label + '.',
    '  No test timeout can fire in a blocked process: it is killed (SIGKILL) so that the run goes on, and the file fails.',
    '  main thread wait channel: ' + read('/proc/' + pid + '/task/' + pid + '/wchan') + '; system call: ' + read('/proc/' + pid + '/task/' + pid + '/syscall'),
  ]
  try {
    const bt = execFileSync('gdb', ['-p', String(pid), '-batch', '-ex', 'thread apply 1 bt 20'], {encoding: 'utf8', timeout: 60000, stdio: ['ignore', 'pipe', 'ignore']})
    lines.push('  native stack of the main thread (gdb):', ...bt.split('\\n').filter((l) => /^#\\d/.test(l)).map((l) => '    ' + l))
  } catch (e) {
    lines.push('  no native stack: gdb ' + (e.code === 'ENOENT' ? 'is not installed' : 'failed: ' + e.message.split('\\n')[0]))
  }
  const report = lines.join('\\n') + '\\n'
  writeSync(2, report)
  if (workerData.reportFile) { try { writeFileSync(workerData.reportFile, report) } catch {} }
  process.kill(pid, 'SIGKILL')
}, 1000)
`

export function watchHang(opts: {file: string; limitSeconds: number; reportFile?: string}): {label: (l: string) => void; stop: () => Promise<void>} {
  const beat = new Int32Array(new SharedArrayBuffer(4))
  const tick = () => Atomics.store(beat, 0, Math.floor(Date.now() / 1000))
  tick()
  const heart = setInterval(tick, 1000)
  heart.unref()
  const worker = new Worker(WATCHDOG, {eval: true, workerData: {beat: beat.buffer, label: "in the file's top level or a beforeAll hook, before the first test", ...opts}})
  worker.unref()
  return {
    label: (l) => worker.postMessage(l),
    stop: async () => {
      clearInterval(heart)
      await worker.terminate()
    },
  }
}
