import {spawn} from 'node:child_process'
import {copyFile, mkdtemp, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {createConnection, type Socket} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import type {Duplex} from 'node:stream'

import {type ExecResult, run} from '../util/exec.js'
import {freeLoopbackPort} from '../util/net.js'


export interface HostExecOptions {
  timeoutMs?: number
  signal?: AbortSignal
}

/** A process QEMU runs as on the validation host. */
export interface HostProcess {
  /** resolves when the process ends: its exit code, or null when killed by a signal */
  readonly exited: Promise<number | null>
  /** last lines QEMU printed on stderr (why it failed to start) */
  output(): string
  kill(): Promise<void>
}

/**
 * The machine QEMU runs on: this one, or a remote AMD host reached over SSH. Validation is
 * written once against this interface.
 */
export interface ValidationHost {
  /** "local" or user@host, for messages */
  readonly label: string
  readonly remote: boolean
  exec(cmd: string, args: readonly string[], opts?: HostExecOptions): Promise<ExecResult>
  /** undefined when the file does not exist or cannot be read */
  readFile(path: string): Promise<Buffer | undefined>
  writeFile(path: string, data: Buffer | string): Promise<void>
  /** a fresh directory for this run's files, removed by cleanup() */
  tempDir(): Promise<string>
  /** puts a local file at path on the host (a copy locally; SFTP with resume and checksum remotely) */
  putFile(localPath: string, hostPath: string, onProgress?: (done: number, total: number) => void, sha256?: string): Promise<void>
  /** brings a host file here (serial log) */
  getFile(hostPath: string, localPath: string): Promise<void>
  spawn(cmd: string, args: readonly string[]): HostProcess
  /** a TCP stream to 127.0.0.1:port on the host (QEMU's hostfwd) */
  connectTcp(port: number): Promise<Duplex>
  /** a TCP port on the host's 127.0.0.1 that is free now */
  freePort(): Promise<number>
  /** removes temp dirs; closes connections */
  cleanup(): Promise<void>
}

/** This machine. */
export class LocalHost implements ValidationHost {
  readonly label = 'local'
  readonly remote = false
  private readonly dirs: string[] = []

  async exec(cmd: string, args: readonly string[], opts: HostExecOptions = {}): Promise<ExecResult> {
    return run(cmd, args, {reject: false, timeout: opts.timeoutMs, signal: opts.signal})
  }

  async readFile(path: string): Promise<Buffer | undefined> {
    try {
      return await readFile(path)
    } catch {
      return undefined
    }
  }

  async writeFile(path: string, data: Buffer | string): Promise<void> {
    await writeFile(path, data)
  }

  async tempDir(): Promise<string> {
    const dir = await mkdtemp(join(process.env.TMPDIR ?? tmpdir(), 'cvm-validate-'))
    this.dirs.push(dir)
    return dir
  }

  async putFile(localPath: string, hostPath: string, onProgress?: (done: number, total: number) => void): Promise<void> {
    if (localPath === hostPath) return
    await copyFile(localPath, hostPath)
    const {size} = await stat(hostPath)
    onProgress?.(size, size)
  }

  async getFile(hostPath: string, localPath: string): Promise<void> {
    if (hostPath !== localPath) await copyFile(hostPath, localPath)
  }

  spawn(cmd: string, args: readonly string[]): HostProcess {
    // setpriv --pdeathsig: QEMU dies with us even if node is killed before it can clean up
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', cmd, ...args], {stdio: ['ignore', 'pipe', 'pipe']})
    let tail = ''
    const keep = (b: Buffer) => {
      tail = (tail + b.toString()).slice(-4000)
    }
    child.stdout.on('data', keep)
    child.stderr.on('data', keep)
    const exited = new Promise<number | null>((resolve) => {
      child.on('error', (e) => {
        tail += `\n${e.message}`
        resolve(127)
      })
      child.on('exit', (code) => resolve(code))
    })
    return {
      exited,
      output: () => tail,
      async kill() {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
        await exited
      },
    }
  }

  connectTcp(port: number): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const sock: Socket = createConnection({host: '127.0.0.1', port})
      sock.once('connect', () => resolve(sock))
      sock.once('error', reject)
    })
  }

  freePort(): Promise<number> {
    return freeLoopbackPort()
  }


  async cleanup(): Promise<void> {
    for (const d of this.dirs.splice(0)) await rm(d, {recursive: true, force: true})
  }
}
