import {readRegistryCredentials} from '../remote/oci/credentials.js'
import {OciClient} from '../remote/oci/client.js'
import type {OciRepository} from '../remote/oci/reference.js'
import {loadCacheSigner, loadTrustedKey} from './cache-signature.js'
import type {BuildOptions} from './options.js'
import {RemoteStageCache} from './remote-cache.js'

/** The registries a build reads stage outputs from (--cache-to first, then --cache-from), and the one it pushes to. */
export interface RemoteCaches {
  readers: RemoteStageCache[]
  pusher?: RemoteStageCache
  /** the registries found down or silent: asked nothing more by the build, nor by its publish */
  down?: Set<RemoteStageCache>
}

/**
 * Opens the remote caches the options name; none named is an empty set. Credentials are read as
 * docker and podman read them (src/remote/oci/credentials.ts), the trusted keys are --cache-trust
 * and the public half of --cache-key.
 */
export function openRemoteCaches(options: BuildOptions, env: NodeJS.ProcessEnv = process.env): RemoteCaches {
  const {cacheFrom, cacheTo, cacheKey, cacheTrust, cacheCa} = options
  if (!cacheFrom && !cacheTo) return {readers: [], down: new Set()}
  const signer = cacheKey ? loadCacheSigner(cacheKey) : undefined
  const trusted = [...(cacheTrust ?? []).map((f) => loadTrustedKey(f)), ...(signer ? [signer.publicKey] : [])]
  const open = (repo: OciRepository) =>
    new RemoteStageCache(new OciClient(repo, {caFile: cacheCa, credentials: readRegistryCredentials(repo.host, repo.repository, env)}), {signer, trusted})
  const pusher = cacheTo ? open(cacheTo) : undefined
  const readers = [...(pusher ? [pusher] : []), ...(cacheFrom && cacheFrom.display !== cacheTo?.display ? [open(cacheFrom)] : [])]
  return {readers, pusher, down: new Set()}
}
