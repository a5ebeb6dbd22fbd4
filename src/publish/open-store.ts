import type {ConnectOptions} from '../remote/ssh.js'
import type {ReleaseStore} from './store.js'
import type {PublishTarget} from './target.js'

/**
 * The store for a target: apart from the ReleaseStore interface, which the stores implement.
 * sha256MemoDir: where a directory target's files have their sha256s kept by extent digest.
 */
export async function openReleaseStore(target: PublishTarget, releasePath: string[], ssh: ConnectOptions, local: {sha256MemoDir?: string} = {}): Promise<ReleaseStore> {
  if (target.kind === 'dir') {
    const {DirReleaseStore} = await import('./dir-store.js')
    return new DirReleaseStore(target, releasePath, local.sha256MemoDir)
  }
  const {SftpReleaseStore} = await import('./sftp-store.js')
  return SftpReleaseStore.open(target, releasePath, ssh)
}
