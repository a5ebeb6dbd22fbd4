import {closeSync, fstatSync, openSync, readFileSync} from 'node:fs'

import {InputError} from '../errors.js'

/** Which key file it is, for the messages: the flag that named it. */
export interface KeyFileOrigin {
  /** the flag or option that named the file, e.g. --signing-key */
  flag: string
}

/**
 * Reads a private key file (or a passphrase file), refusing one that group or others may open, as
 * OpenSSH refuses an "UNPROTECTED PRIVATE KEY FILE". Unlike OpenSSH, a file owned by another user
 * (say, root running on a user's key) is refused too: its mode exposes the key whoever owns it.
 * The mode is read from the open descriptor, so the file checked is the file read.
 */
export function readPrivateKeyFile(path: string, origin: KeyFileOrigin): Buffer {
  let fd: number
  try {
    fd = openSync(path, 'r')
  } catch (e) {
    throw new InputError(`${origin.flag} ${path} cannot be read: ${(e as Error).message}`, {hint: 'give the path of a readable key file', cause: e})
  }
  try {
    const st = fstatSync(fd)
    if (!st.isFile()) throw new InputError(`${origin.flag} ${path} is not a regular file`, {hint: 'give the key file itself'})
    if ((st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0')
      const own = process.getuid?.() === st.uid ? '' : ` (as its owner, uid ${st.uid})`
      throw new InputError(`${origin.flag} ${path} is open to group or others (mode ${mode}): an unprotected private key file is refused, as OpenSSH refuses one`, {
        hint: `chmod 600 ${path}${own}`,
      })
    }
    return readFileSync(fd)
  } finally {
    closeSync(fd)
  }
}

/**
 * A passphrase from a file: its first line (gpg --passphrase-file reads the same), the file checked
 * as a private key is. Never from an argument: argv is readable by every local user in /proc.
 */
export function readPassphraseFile(path: string, origin: KeyFileOrigin): string {
  const text = readPrivateKeyFile(path, origin).toString('utf8')
  const first = text.split('\n', 1)[0].replace(/\r$/, '')
  if (first === '') throw new InputError(`${origin.flag} ${path} holds no passphrase on its first line`, {hint: 'write the passphrase as the first line of the file'})
  return first
}
