// Runs src/util/exec.ts's run() on the command given as JSON argv, in a process of its own, so a
// test can SIGKILL this process (standing for cvm-image) while the command runs.
import {run} from '../../src/util/exec.js'

const [cmd, ...args] = JSON.parse(process.argv[2]) as string[]
process.stdout.write(`started ${process.pid}\n`)
await run(cmd, args).catch((e: Error) => {
  process.stdout.write(`failed: ${e.message}\n`)
  process.exit(1)
})
