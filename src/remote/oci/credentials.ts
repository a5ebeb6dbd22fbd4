import {spawnSync} from 'node:child_process'
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
 * first, then $DOCKER_CONFIG/config.json (or ~/.docker/config.json). In each, as docker does: a
 * `credHelpers` entry for the host runs `docker-credential-<helper> get`; else a `credsStore` runs
 * its helper the same way; else (or when the store has nothing for the host) the `auths` entries
 * whose key names the host (bare, with https://, or with a repository path, the longest path that
 * prefixes the repository winning). docs/remote-cache.md "Credentials and TLS".
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
    // docker's order: the host's own helper, then the store of every host, then auths
    const hostHelper = config.credHelpers?.[host]
    if (typeof hostHelper === 'string' && hostHelper !== '') {
      const got = runCredentialHelper(hostHelper, host, file, env, {required: true})
      if (got) return got
    } else if (typeof config.credsStore === 'string' && config.credsStore !== '') {
      // a store that is missing or has nothing for this host is no refusal: auths may have it, or the registry reads anonymously
      const got = runCredentialHelper(config.credsStore, host, file, env, {required: false})
      if (got) return got
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
    // an entry a credential store keeps has no auth of its own ({}): nothing to read here
    if (best && (best.entry.auth || (best.entry.username !== undefined && best.entry.password !== undefined))) {
      const {auth, username, password} = best.entry
      if (username !== undefined && password !== undefined) return {user: username, password, source: file}
      const decoded = Buffer.from(auth ?? '', 'base64').toString('utf8')
      const colon = decoded.indexOf(':')
      if (colon <= 0) throw new InputError(`registry credentials for ${host} in ${file} are not base64 of user:password`, {hint: `log in again: docker login ${host}`})
      return {user: decoded.slice(0, colon), password: decoded.slice(colon + 1), source: file}
    }
  }
  return undefined
}

const HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/
const HELPER_TIMEOUT_MS = 60_000

/**
 * `docker-credential-<helper> get` with the registry host on stdin, as docker runs it: its stdout is
 * {ServerURL, Username, Secret}. "credentials not found" (any failure, for a credsStore) is undefined;
 * a credHelpers entry whose helper cannot be run or answers garbage is refused. The helper's stdout
 * holds the secret: no message quotes it.
 */
function runCredentialHelper(helper: string, host: string, file: string, env: NodeJS.ProcessEnv, o: {required: boolean}): RegistryCredentials | undefined {
  const program = `docker-credential-${helper}`
  const named = `${program} (named by ${o.required ? `credHelpers["${host}"]` : 'credsStore'} in ${file})`
  if (!HELPER_NAME.test(helper)) {
    throw new InputError(`registry credentials for ${host}: ${JSON.stringify(helper)} in ${file} is no credential helper name`, {hint: 'a helper is named as docker names it: "pass" runs docker-credential-pass'})
  }
  const r = spawnSync(program, ['get'], {input: host, encoding: 'utf8', timeout: HELPER_TIMEOUT_MS, env: {...process.env, ...env}, stdio: ['pipe', 'pipe', 'pipe']})
  const err = (r.stderr ?? '').trim().split('\n')[0]?.slice(0, 200) ?? ''
  if (r.error) {
    if (!o.required) return undefined
    const missing = (r.error as NodeJS.ErrnoException).code === 'ENOENT'
    throw new InputError(`registry credentials for ${host} are kept by ${named}, which ${missing ? 'is not on PATH' : `could not be run (${r.error.message})`}`, {
      hint: missing ? `install ${program}, or write the credentials into a file of their own and point REGISTRY_AUTH_FILE at it` : `run \`echo ${host} | ${program} get >/dev/null\` to see why`,
    })
  }
  if (r.status !== 0) {
    // docker's helpers say "credentials not found in native keychain" and exit 1 for a host they do not know
    if (!o.required || /not found/i.test(err + (r.stdout ?? ''))) return undefined
    throw new InputError(`registry credentials for ${host}: ${named} failed (exit ${r.status ?? r.signal})${err ? `: ${err}` : ''}`, {hint: `log in again (docker login ${host}), or run \`echo ${host} | ${program} get >/dev/null\` to see why`})
  }
  let answer: {Username?: unknown; Secret?: unknown}
  try {
    answer = JSON.parse(r.stdout)
  } catch {
    throw new InputError(`registry credentials for ${host}: ${named} did not answer JSON {ServerURL, Username, Secret}`, {hint: `check the helper: echo ${host} | ${program} get`})
  }
  if (typeof answer?.Username !== 'string' || typeof answer.Secret !== 'string' || answer.Secret === '') {
    throw new InputError(`registry credentials for ${host}: ${named} answered no Username and Secret`, {hint: `log in again: docker login ${host}`})
  }
  if (answer.Username === '<token>') {
    throw new InputError(`registry credentials for ${host}: ${named} holds an identity token (an OAuth refresh token), which cvm-image cannot exchange`, {
      hint: `log in with a user and password or access token (docker login -u USER ${host}), or point REGISTRY_AUTH_FILE at a file with "auths"`,
    })
  }
  return {user: answer.Username, password: answer.Secret, source: named}
}
