import {posix} from 'node:path'

import {connect, type ConnectOptions, type SshSession} from '../remote/ssh.js'
import type {ReleaseStore, TransferProgress} from './store.js'
import {describeTarget, type PublishTarget} from './target.js'

/** A release directory on an SFTP server, reached over ssh2 with a pinned host key. */
export class SftpReleaseStore implements ReleaseStore {
  readonly location: string

  private constructor(
    private readonly session: SshSession,
    readonly dir: string,
    target: PublishTarget & {kind: 'sftp'},
  ) {
    this.location = describeTarget({...target, path: dir})
  }

  static async open(target: PublishTarget & {kind: 'sftp'}, releasePath: string[], ssh: ConnectOptions): Promise<SftpReleaseStore> {
    const session = await connect({user: target.user, host: target.host, port: target.port}, ssh)
    return new SftpReleaseStore(session, posix.join(target.path, ...releasePath), target)
  }

  private path(name: string): string {
    return posix.join(this.dir, name)
  }

  prepare(): Promise<void> {
    return this.session.mkdirp(this.dir)
  }

  async size(name: string): Promise<number | undefined> {
    return (await this.session.stat(this.path(name)))?.size
  }

  sha256(name: string): Promise<string> {
    return this.session.sha256(this.path(name))
  }

  readFile(name: string): Promise<Buffer> {
    return this.session.readFile(this.path(name))
  }

  list(): Promise<string[]> {
    return this.session.list(this.dir)
  }

  upload(localPath: string, name: string, opts: {onProgress?: (p: TransferProgress) => void; signal?: AbortSignal}) {
    return this.session.upload(localPath, this.path(name), {resume: true, sparse: true, onProgress: opts.onProgress, signal: opts.signal})
  }

  writeFile(name: string, data: Buffer): Promise<void> {
    return this.session.writeFile(this.path(name), data)
  }

  renameNoClobber(from: string, to: string): Promise<boolean> {
    return this.session.renameNoClobber(this.path(from), this.path(to))
  }

  replace(from: string, to: string): Promise<void> {
    return this.session.rename(this.path(from), this.path(to))
  }

  remove(name: string): Promise<void> {
    return this.session.remove(this.path(name))
  }

  close(): Promise<void> {
    return this.session.close()
  }
}
