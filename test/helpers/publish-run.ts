import {spawn} from 'node:child_process'
import {join} from 'node:path'

import type {PublishOptions} from '../../src/publish/index.js'
import {repoRoot} from './paths.js'

export interface KilledPublish {
  /** progress events seen before the kill */
  events: {file: string; done: number; total: number}[]
  signal: NodeJS.Signals | null
  output: string
}

/**
 * Starts publish in a child process and SIGKILLs it once `killWhen` says so (e.g. disk.raw half sent).
 * Rejects if the child finished before it could be killed: such a test proves nothing.
 */
export function publishAndKill(
  args: {recordPath: string; target: string; throttleMs: number; options: Omit<PublishOptions, 'onProgress' | 'log' | 'signal'>},
  killWhen: (e: {file: string; done: number; total: number}) => boolean,
): Promise<KilledPublish> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'test/helpers/publish-child.ts'), JSON.stringify(args)], {cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe']})
    const events: KilledPublish['events'] = []
    let output = ''
    let buf = ''
    let killed = false
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString()
      buf += d.toString()
      let nl
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        let msg: {event?: string; file?: string; done?: number; total?: number}
        try {
          msg = JSON.parse(line)
        } catch {
          continue
        }
        if (msg.event !== 'progress') continue
        const e = {file: msg.file!, done: msg.done!, total: msg.total!}
        events.push(e)
        if (!killed && killWhen(e)) {
          killed = true
          child.kill('SIGKILL')
        }
      }
    })
    child.stderr.on('data', (d: Buffer) => (output += d.toString()))
    child.on('exit', (_code, signal) => {
      if (!killed) reject(new Error(`publish finished before it was killed:\n${output.slice(-3000)}`))
      else resolve({events, signal, output})
    })
  })
}
