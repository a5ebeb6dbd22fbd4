import {readFileSync} from 'node:fs'
import {homedir} from 'node:os'
import {join} from 'node:path'

import {InputError} from '../../errors.js'

/** A user and password for one registry host. Never printed: messages name only the file it came from. */
export interface RegistryCredentials {
  user: string
  password: string
  /** the file the credentials were read from, for messages */
  source: string
}

/**
 * Credentials for a registry host, read as podman, skopeo and docker read them: REGISTRY_AUTH_FILE
 * first, then $DOCKER_CONFIG/config.json (or ~/.docker/config.json); in each, `auths` entries whose
 * key names the host (bare, with https://, or with a repository path, the longest path that
 * prefixes the repository winning). credHelpers and credsStore are not run (an external program per
 * lookup): a host a credHelpers entry names gets an error that says so.
 */
export function readRegistryCredentials(host: string, repository: string, env: NodeJS.ProcessEnv = process.env): RegistryCredentials | undefined {
  const files = [env.REGISTRY_AUTH_FILE, join(env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json')].filter((f): f is string => !!f)
  for (const file of files) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch {
      continue
    }
    let config: {auths?: Record<string, {auth?: string; username?: string; password?: string}>; credHelpers?: Record<string, string>; credsStore?: string}
    try {
      config = JSON.parse(text)
    } catch (e) {
      throw new InputError(`registry credentials file ${file} is not JSON: ${(e as Error).message}`, {hint: 'fix it, or log in again (docker login / podman login) to rewrite it'})
    }
    let best: {path: string; entry: {auth?: string; username?: string; password?: string}} | undefined
    for (const [key, entry] of Object.entries(config.auths ?? {})) {
      const name = key.replace(/^https?:\/\//, '').replace(/\/v[12]\/?$/, '').replace(/\/+$/, '')
      const [entryHost, ...path] = name.split('/')
      const entryPath = path.join('/')
      if (entryHost !== host) continue
      if (entryPath !== '' && repository !== entryPath && !repository.startsWith(entryPath + '/')) continue
      if (!best || entryPath.length > best.path.length) best = {path: entryPath, entry}
    }
    if (best) {
      const {auth, username, password} = best.entry
      if (username !== undefined && password !== undefined) return {user: username, password, source: file}
      const decoded = Buffer.from(auth ?? '', 'base64').toString('utf8')
      const colon = decoded.indexOf(':')
      if (colon <= 0) throw new InputError(`registry credentials for ${host} in ${file} are not base64 of user:password`, {hint: `log in again: docker login ${host}`})
      return {user: decoded.slice(0, colon), password: decoded.slice(colon + 1), source: file}
    }
    // a global credsStore alone is not refused: a registry that reads anonymously needs no credentials
    const helper = config.credHelpers?.[host]
    if (helper) {
      throw new InputError(`registry credentials for ${host} are kept by docker-credential-${helper} (${file}), which cvm-image does not run`, {
        hint: `write them into a file of their own and point REGISTRY_AUTH_FILE at it: {"auths": {"${host}": {"auth": "<base64 of user:password>"}}}`,
      })
    }
  }
  return undefined
}
