import {StageError} from '../errors.js'
import {connect, type SshSession} from '../remote/ssh.js'
import type {ExecResult} from '../util/exec.js'
import type {ValidationHost} from './host.js'
import type {RunKeys} from './seed.js'

/** The guest's shell as the checks see it: the SSH session, or recorded guest output in tests. */
export interface GuestExec {
  /** runs a command (an argument array) and waits for its end, at most timeoutMs */
  exec(args: readonly string[], opts: {timeoutMs: number; stdin?: Buffer | string}): Promise<ExecResult>
  /** starts a command and returns without waiting for its end (kexec -e, poweroff): the link may drop */
  fire(args: readonly string[]): void
}

export interface WaitOptions {
  timeoutMs: number
  signal?: AbortSignal
  /** rejects (or resolves) when QEMU ends: waiting for SSH stops then */
  qemuExited?: Promise<unknown>
  onAttempt?: (error: string) => void
  /** looked at every few seconds: a reason to stop waiting (the firmware found nothing it may boot), or undefined */
  stopWhen?: () => Promise<string | undefined>
}

/** An SSH session with the guest, as root with the run's key, its host key pinned to the run's. */
export class GuestSession implements GuestExec {
  private constructor(private readonly session: SshSession) {}

  /** Connects through QEMU's hostfwd on the validation host, retrying until the guest's sshd answers. */
  static async waitFor(host: ValidationHost, port: number, keys: RunKeys, opts: WaitOptions): Promise<GuestSession> {
    const deadline = Date.now() + opts.timeoutMs
    let qemuGone = false
    void opts.qemuExited?.then(
      () => (qemuGone = true),
      () => (qemuGone = true),
    )
    let last = 'no attempt yet'
    let nextLook = 0
    while (Date.now() < deadline) {
      if (opts.signal?.aborted) throw new StageError('validation was interrupted while waiting for the guest')
      if (qemuGone) throw new StageError(`QEMU ended before the guest's SSH answered (last attempt: ${last})`)
      if (opts.stopWhen && Date.now() >= nextLook) {
        nextLook = Date.now() + 3000
        const why = await opts.stopWhen()
        if (why) throw new StageError(why)
      }
      try {
        return await GuestSession.connectOnce(host, port, keys, Math.min(30_000, Math.max(1000, deadline - Date.now())))
      } catch (e) {
        // a key that cannot be read never will be: no point waiting out the timeout for it
        if (/cannot parse/i.test((e as Error).message)) throw new StageError(`the run's SSH key cannot be used: ${(e as Error).message}`, {cause: e})
        // a host key other than the run's: the guest still runs with the image's own key (seed not applied yet)
        last = (e as Error).message
        opts.onAttempt?.(last)
        // sshd answers within a second of starting: a short pause between tries loses less of it
        await new Promise((r) => setTimeout(r, 500))
      }
    }
    throw new StageError(`the guest's SSH did not answer within ${Math.round(opts.timeoutMs / 1000)} s (last attempt: ${last})`, {
      hint: 'see the serial log: did the kernel boot, did cloud-init pick up the seed, did the network come up?',
    })
  }

  private static async connectOnce(host: ValidationHost, port: number, keys: RunKeys, readyTimeout: number): Promise<GuestSession> {
    const sock = await host.connectTcp(port)
    const session = await connect(
      {user: 'root', host: 'guest', port},
      {sock, privateKey: Buffer.from(keys.clientPrivateKey), hostKey: keys.hostKeyFingerprint, readyTimeout, keepaliveInterval: 10_000, keepaliveCountMax: 6},
    ).catch((e) => {
      sock.destroy()
      throw e
    })
    return new GuestSession(session)
  }

  /** Runs a command (an argument array, quoted for the guest's shell) with a hard timeout. */
  exec(args: readonly string[], opts: {timeoutMs: number; stdin?: Buffer | string}): Promise<ExecResult> {
    return this.session.exec(args, {reject: false, timeoutMs: opts.timeoutMs, input: opts.stdin})
  }

  fire(args: readonly string[]): void {
    this.session.fire(args)
  }

  close(): void {
    void this.session.close()
  }
}
