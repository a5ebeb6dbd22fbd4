import {StageError} from '../errors.js'

export interface TransferProgress {
  done: number
  total: number
}

/**
 * One release directory at a target (<target>/<recipe id>/<version>/). Names are file names in it.
 * Publishing builds atomicity on top: upload under a temp name, verify, rename.
 */
export interface ReleaseStore {
  /** the release directory, for people and --json (dir:/abs/path or sftp://user@host/path) */
  readonly location: string
  /** creates the release directory (and its parents) */
  prepare(): Promise<void>
  size(name: string): Promise<number | undefined>
  /** sha256 of a file, computed where it lives when possible */
  sha256(name: string): Promise<string>
  readFile(name: string): Promise<Buffer>
  list(): Promise<string[]>
  /** copies a local file to name, continuing a partial copy whose prefix matches; returns bytes transferred */
  upload(localPath: string, name: string, opts: {onProgress?: (p: TransferProgress) => void; signal?: AbortSignal}): Promise<{bytesSent: number; resumedFrom: number}>
  writeFile(name: string, data: Buffer): Promise<void>
  /** atomically renames unless `to` exists; false (and nothing changed) when it does */
  renameNoClobber(from: string, to: string): Promise<boolean>
  /** atomically renames over `to` (repairing a damaged file of a release) */
  replace(from: string, to: string): Promise<void>
  remove(name: string): Promise<void>
  close(): Promise<void>
}

/** SFTP status codes (draft-ietf-secsh-filexfer-02) as the errno a local file system would give */
const SFTP_STATUS: Record<number, string> = {2: 'ENOENT', 3: 'EACCES', 4: 'EIO (SSH_FX_FAILURE)'}

/**
 * A failure of the target's file system or transport (read-only, not writable, not a directory, full)
 * as the documented transport failure (exit 1), naming the target and the reason, never as a bug.
 */
export function transportError(location: string, e: unknown): StageError {
  const err = e as NodeJS.ErrnoException & {code?: string | number}
  const code = typeof err.code === 'number' ? (SFTP_STATUS[err.code] ?? `SFTP status ${err.code}`) : (err.code ?? 'error')
  const what = (err.message ?? String(e)).replace(/^[A-Z]+: /, '')
  return new StageError(`cannot publish to ${location}: ${code}: ${what}`, {
    hint: /EACCES|EPERM/.test(code)
      ? 'the target is not writable by this user: fix its permissions, or publish to another target'
      : /EROFS/.test(code)
        ? 'the target is on a read-only file system: remount it read-write, or publish to another target'
        : /ENOTDIR|EEXIST/.test(code)
          ? 'a part of the target path is a file, not a directory: fix the path'
          : /ENOSPC|EDQUOT/.test(code)
            ? 'the target is full: free space there and run publish again (it resumes)'
            : 'check the target and run publish again: it resumes what was uploaded',
    cause: e,
  })
}
