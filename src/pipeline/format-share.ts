import type {FormatShare} from '../formats/index.js'
import type {RemoteCaches} from './open-remote-cache.js'
import {RegistryError} from '../remote/oci/client.js'
import type {RemoteStageCache} from './remote-cache.js'

/**
 * Publish's format files through the team's registries (docs/remote-cache.md "Publish's formats"):
 * a file this machine has not staged is pulled from the first registry that has it signed by a
 * trusted key; every file is pushed to --cache-to. As with the stages, the registry is never a
 * reason to fail: a registry that is down is asked nothing more, a refused or failed pull means the
 * file is converted here, a failed push is one warning line. None given: undefined (publish alone).
 */
export function registryFormatShare(remote: RemoteCaches, warn: (line: string) => void): FormatShare | undefined {
  if (remote.readers.length === 0) return undefined
  // shared with the build's stages: a registry they found down is not asked again here
  const down = remote.down ?? new Set<RemoteStageCache>()
  return {
    async pull(format, key, path) {
      const reasons: string[] = []
      for (const reader of remote.readers) {
        if (down.has(reader)) continue
        const got = await reader.pullFormat(`format-${format}`, key, path)
        if ('sha256' in got) return got
        if (got.down) down.add(reader)
        // a file the registry lacks is the usual case (the first runner to publish this disk): no warning
        if (!got.absent) reasons.push(got.reason)
      }
      if (reasons.length) warn(`format ${format}: converted here, no registry gave its file: ${reasons.join('; ')}`)
      return {reason: reasons.join('; ') || 'in no registry'}
    },
    async push(format, key, file) {
      const pusher = remote.pusher
      if (!pusher || down.has(pusher)) return
      try {
        await pusher.pushFormat(`format-${format}`, key, file, {format, key})
      } catch (e) {
        // down or silent: asked nothing more in this publish
        if (e instanceof RegistryError && e.transport) down.add(pusher)
        warn(`format ${format}: not pushed to ${pusher.client.repo.display}: ${(e as Error).message}`)
      }
    },
  }
}
