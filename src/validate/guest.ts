import ssh2 from 'ssh2'

import {StageError} from '../errors.js'
import type {ValidationHost} from './host.js'
import {fingerprintOf, type RunKeys} from './seed.js'

export interface GuestExecResult {
  exitCode: number
  stdout: string
  stderr: string
}

/** The guest's shell as the checks see it: the SSH session, or recorded guest output in tests. */
export interface GuestExec {
  /** runs a command (an argument array) and waits for its end, at most timeoutMs */
  exec(args: readonly string[], opts: {timeoutMs: number; stdin?: Buffer | string}): Promise<GuestExecResult>
  /** starts a command and returns without waiting for its end (kexec -e, poweroff): the link may drop */
  fire(args: readonly string[]): void
}

/** Quotes an argument array for the guest's shell (ssh runs commands through it). */
export function shellQuote(args: readonly string[]): string {
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(' ')
}

export interface WaitOptions {
  timeoutMs: number
  signal?: AbortSignal
  /** rejects (or resolves) when QEMU ends: waiting for SSH stops then */
  qemuExited?: Promise<unknown>
  onAttempt?: (error: string) => void
}

/** An SSH session with the guest, as root with the run's key, its host key pinned to the run's. */
export class GuestSession implements GuestExec {
  private constructor(private readonly client: ssh2.Client) {}

  /** Connects through QEMU's hostfwd on the validation host, retrying until the guest's sshd answers. */
  static async waitFor(host: ValidationHost, port: number, keys: RunKeys, opts: WaitOptions): Promise<GuestSession> {
    const deadline = Date.now() + opts.timeoutMs
    let qemuGone = false
    void opts.qemuExited?.then(
      () => (qemuGone = true),
      () => (qemuGone = true),
    )
    let last = 'no attempt yet'
    while (Date.now() < deadline) {
      if (opts.signal?.aborted) throw new StageError('validation was interrupted while waiting for the guest')
      if (qemuGone) throw new StageError(`QEMU ended before the guest's SSH answered (last attempt: ${last})`)
      try {
        return await GuestSession.connectOnce(host, port, keys, Math.min(30_000, Math.max(1000, deadline - Date.now())))
      } catch (e) {
        last = (e as Error).message
        opts.onAttempt?.(last)
        await new Promise((r) => setTimeout(r, 2000))
      }
    }
    throw new StageError(`the guest's SSH did not answer within ${Math.round(opts.timeoutMs / 1000)} s (last attempt: ${last})`, {
      hint: 'see the serial log: did the kernel boot, did cloud-init pick up the seed, did the network come up?',
    })
  }

  private static async connectOnce(host: ValidationHost, port: number, keys: RunKeys, readyTimeout: number): Promise<GuestSession> {
    const sock = await host.connectTcp(port)
    const client = new ssh2.Client()
    let seenKey: string | undefined
    return new Promise((resolve, reject) => {
      client.once('ready', () => {
        resolve(new GuestSession(client))
      })
      // ssh2 may emit several errors for one failed attempt; the first one settles it
      client.on('error', (e) => {
        client.end()
        sock.destroy()
        reject(seenKey && seenKey !== keys.hostKeyFingerprint ? new Error(`guest host key ${seenKey} is not the run's ${keys.hostKeyFingerprint} (seed not applied yet?)`) : e)
      })
      client.connect({
        sock,
        username: 'root',
        privateKey: keys.clientPrivateKey,
        readyTimeout,
        keepaliveInterval: 10_000,
        keepaliveCountMax: 6,
        hostVerifier: (key: Buffer) => {
          seenKey = fingerprintOf(key)
          return seenKey === keys.hostKeyFingerprint
        },
      })
    })
  }

  /** Runs a command (an argument array, quoted for the guest's shell) with a hard timeout. */
  exec(args: readonly string[], opts: {timeoutMs: number; stdin?: Buffer | string}): Promise<GuestExecResult> {
    const command = shellQuote(args)
    return new Promise((resolve, reject) => {
      this.client.exec(command, (err, stream) => {
        if (err) return reject(err)
        let stdout = ''
        let stderr = ''
        const timer = setTimeout(() => {
          stream.close()
          reject(new Error(`\`${command.slice(0, 80)}\` timed out after ${opts.timeoutMs / 1000} s in the guest`))
        }, opts.timeoutMs)
        stream.on('data', (d: Buffer) => (stdout += d.toString()))
        stream.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
        stream.on('close', (code: number | null) => {
          clearTimeout(timer)
          resolve({exitCode: code ?? -1, stdout, stderr})
        })
        if (opts.stdin !== undefined) stream.end(opts.stdin)
        else stream.end()
      })
    })
  }

  /** Starts a command and returns without waiting for its end (kexec -e, poweroff): the link may drop. */
  fire(args: readonly string[]): void {
    this.client.exec(shellQuote(args), (err, stream) => {
      if (!err) {
        stream.on('data', () => {})
        stream.stderr.on('data', () => {})
      }
    })
  }

  close(): void {
    this.client.end()
  }
}
