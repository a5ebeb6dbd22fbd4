import type {ConnectOptions} from '../remote/ssh.js'
import type {PublishTarget} from './target.js'

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
  remove(name: string): Promise<void>
  close(): Promise<void>
}

export async function openReleaseStore(target: PublishTarget, releasePath: string[], ssh: ConnectOptions): Promise<ReleaseStore> {
  if (target.kind === 'dir') {
    const {DirReleaseStore} = await import('./dir-store.js')
    return new DirReleaseStore(target, releasePath)
  }
  const {SftpReleaseStore} = await import('./sftp-store.js')
  return SftpReleaseStore.open(target, releasePath, ssh)
}
