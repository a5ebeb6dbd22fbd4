import {InputError} from '../errors.js'

/** x86's COMMAND_LINE_SIZE: the kernel keeps at most this many bytes of its command line, the NUL included. */
export const COMMAND_LINE_SIZE = 2048

/** root= by PARTUUID (no initrd needed), `rw` unless the recipe says rw or ro, then the recipe's arguments. */
export function kernelCmdline(rootPartUuid: string, recipeCmdline: string): string {
  const problem = rootArgument(recipeCmdline)
  if (problem) {
    throw new InputError(`recipe boot.cmdline sets "${problem}", but assemble chooses the root device`, {hint: 'remove root= from boot.cmdline: the UKI gets root=PARTUUID=<the root partition>'})
  }
  const args = recipeCmdline.trim().split(/\s+/).filter(Boolean)
  return [`root=PARTUUID=${rootPartUuid}`, ...(args.includes('rw') || args.includes('ro') ? [] : ['rw']), ...args].join(' ')
}

/** The root= argument of a recipe's command line, if it has one. */
export function rootArgument(recipeCmdline: string): string | undefined {
  return recipeCmdline.trim().split(/\s+/).find((a) => a.startsWith('root='))
}

/** Bytes of the command line the UKI will carry for a recipe's boot.cmdline (a PARTUUID is 36 characters). */
export function kernelCmdlineBytes(recipeCmdline: string): number {
  return Buffer.byteLength(kernelCmdline('00000000-0000-4000-8000-000000000000', recipeCmdline))
}
