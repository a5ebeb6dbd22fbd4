/**
 * Runs publish() in a child process so a test can SIGKILL it mid-upload. Each progress event is
 * printed as a JSON line and then held for throttleMs (a synchronous sleep), so the upload is slow
 * enough to be caught half done. Usage: node --import tsx publish-child.ts '<json args>'
 */
import {readBuildRecord} from '../../src/pipeline/build-record.js'
import {publish, type PublishOptions} from '../../src/publish/index.js'

interface ChildArgs {
  recordPath: string
  target: string
  throttleMs: number
  options: Omit<PublishOptions, 'onProgress' | 'log' | 'signal'>
}

const args = JSON.parse(process.argv[2]) as ChildArgs
const record = await readBuildRecord('/nonexistent', args.recordPath)
const sleeper = new Int32Array(new SharedArrayBuffer(4))
const result = await publish(record, args.target, {
  ...args.options,
  onProgress: (p) => {
    process.stdout.write(JSON.stringify({event: 'progress', ...p}) + '\n')
    Atomics.wait(sleeper, 0, 0, args.throttleMs)
  },
  log: (line) => process.stdout.write(JSON.stringify({event: 'log', line}) + '\n'),
})
process.stdout.write(JSON.stringify({event: 'result', result}) + '\n')
