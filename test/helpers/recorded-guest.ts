import type {CheckContext, GuestMachine} from '../../src/validate/check-types.js'
import type {ExecResult} from '../../src/util/exec.js'
import type {GuestExec} from '../../src/validate/guest.js'

/** What a recorded guest answers to a command: stdout alone (exit 0), the whole result, or a failure (a timeout, a dropped link). */
export type Answer = string | Partial<ExecResult> | Error

/** A command (argv joined by spaces) matched by a substring or a pattern, and the guest's answer to it. */
export type Recorded = [match: string | RegExp, answer: Answer]

/**
 * A guest that answers commands from recorded output, first match wins. A command with no recording
 * throws, which a check reports as a failure: the tests see it.
 */
export class RecordedGuest implements GuestExec {
  readonly commands: string[] = []
  readonly fired: string[] = []
  readonly stdin: Array<Buffer | string> = []

  constructor(private readonly answers: Recorded[]) {}

  async exec(args: readonly string[], opts: {timeoutMs: number; stdin?: Buffer | string}): Promise<ExecResult> {
    const command = args.join(' ')
    this.commands.push(command)
    if (opts.stdin !== undefined) this.stdin.push(opts.stdin)
    const hit = this.answers.find(([m]) => (typeof m === 'string' ? command.includes(m) : m.test(command)))
    if (!hit) throw new Error(`no recorded guest output for: ${command.slice(0, 120)}`)
    const a = hit[1]
    if (a instanceof Error) throw a
    return typeof a === 'string' ? {exitCode: 0, stdout: a, stderr: ''} : {exitCode: 0, stdout: '', stderr: '', ...a}
  }

  fire(args: readonly string[]): void {
    this.fired.push(args.join(' '))
  }
}

export interface RecordedMachineOptions {
  accel?: 'tcg' | 'kvm'
  /** the guest after reconnect() (kexec), or the error waiting for it ends with */
  afterReconnect?: GuestExec | Error
  /** QEMU's exit code once the guest powers off; 'running' never exits */
  exitCode?: number | null | 'running'
  serial?: string
  output?: string
}

/** The machine around a recorded guest: QEMU's exit, the serial log, a reconnect after kexec. */
export class RecordedMachine implements GuestMachine {
  readonly accel: 'tcg' | 'kvm'
  gone: string | undefined
  current: GuestExec
  readonly exited: Promise<number | null>

  constructor(
    guest: GuestExec,
    private readonly opts: RecordedMachineOptions = {},
  ) {
    this.accel = opts.accel ?? 'tcg'
    this.current = guest
    const code = opts.exitCode ?? 0
    this.exited = code === 'running' ? new Promise(() => {}) : Promise.resolve(code)
  }

  leaving(reason: string): void {
    this.gone = reason
  }

  async reconnect(): Promise<GuestExec> {
    const after = this.opts.afterReconnect
    if (after === undefined || after instanceof Error) throw after ?? new Error('no recorded guest after reconnect')
    this.gone = undefined
    this.current = after
    return after
  }

  output(): string {
    return this.opts.output ?? ''
  }

  async serial(): Promise<string> {
    return this.opts.serial ?? ''
  }
}

/** A check context over a recorded guest; ctx.guest follows the machine across a kexec, as in a real boot. */
export function recordedContext(
  guest: GuestExec | Recorded[],
  over: Partial<Omit<CheckContext, 'guest' | 'machine'>> & {machine?: RecordedMachineOptions} = {},
): CheckContext & {machine: RecordedMachine} {
  const {machine: machineOpts, ...rest} = over
  const machine = new RecordedMachine(Array.isArray(guest) ? new RecordedGuest(guest) : guest, machineOpts)
  return {
    mode: 'emulated',
    expected: {},
    forcedSwiotlb: true,
    timeoutMs: 5000,
    uki: {cmdline: 'root=PARTUUID=0a1b2c3d-02 console=ttyS0'},
    shared: {},
    ...rest,
    machine,
    get guest() {
      return machine.current
    },
  }
}
