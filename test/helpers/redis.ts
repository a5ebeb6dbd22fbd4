import {spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import {mkdtemp, rm} from 'node:fs/promises'
import {createConnection} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {freeLoopbackPort} from '../../src/util/net.js'

const REDIS = '/usr/bin/redis-server'

/** Debian's redis-server on 127.0.0.1, as a team's ccache remote storage in tests. */
export interface TestRedis {
  port: number
  /** redis://PASSWORD@127.0.0.1:port (ccache's form) when started with a password */
  url: string
  password?: string
  /** the server's output so far */
  log(): string
  /** its keys (DBSIZE): what the builds stored */
  keys(): Promise<number>
  /** stops the server and removes its temp directory */
  stop(): Promise<void>
}

/**
 * Starts redis-server on a free 127.0.0.1 port in a temp directory, in memory only (--save '',
 * no AOF), optionally with a password (requirepass). Resolves once it answers PING.
 */
export async function startRedis(opts: {password?: string} = {}): Promise<TestRedis> {
  if (!existsSync(REDIS)) throw new Error(`${REDIS} is missing: apt-get install -y redis-server (cvm-image doctor --install installs the tests' packages)`)
  const dir = await mkdtemp(join(tmpdir(), 'cvm-redis-'))
  const port = await freeLoopbackPort()
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--protected-mode', 'yes']
  // in argv, which is public: fine for a throwaway secret that guards a test server for seconds
  if (opts.password) args.push('--requirepass', opts.password)
  const child = spawn(REDIS, args, {stdio: ['ignore', 'pipe', 'pipe']})
  let out = ''
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()))
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const command = (...words: string[]) => resp(port, opts.password ? [['AUTH', opts.password], words] : [words])
  const deadline = Date.now() + 15_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode}) on port ${port}: ${out}`)
    if ((await command('PING').catch(() => '')).includes('PONG')) break
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`redis-server did not answer on 127.0.0.1:${port} within 15 s: ${out}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    port,
    password: opts.password,
    url: `redis://${opts.password ? `${opts.password}@` : ''}127.0.0.1:${port}`,
    log: () => out,
    keys: async () => Number(/:(\d+)\r\n$/.exec(await command('DBSIZE'))?.[1] ?? NaN),
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM')
        await exited
      }
      await rm(dir, {recursive: true, force: true})
    },
  }
}

/** Sends commands in Redis's protocol (RESP) and returns the raw replies, once the last has come. */
function resp(port: number, commands: string[][]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createConnection({host: '127.0.0.1', port})
    let got = ''
    let replies = 0
    s.on('error', reject)
    s.on('data', (b) => {
      got += b.toString()
      replies = got.split('\r\n').filter((l) => /^[+\-:]/.test(l)).length
      if (replies >= commands.length) {
        s.end()
        resolve(got)
      }
    })
    s.write(commands.map((c) => `*${c.length}\r\n${c.map((w) => `$${Buffer.byteLength(w)}\r\n${w}\r\n`).join('')}`).join(''))
  })
}
