import {chmod, mkdir, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {startRegistry, type TestRegistry} from '../../../test/helpers/registry.js'
import {OciClient} from './client.js'
import {readRegistryCredentials} from './credentials.js'
import {parseOciReference} from './reference.js'

/**
 * credHelpers and credsStore of a docker config, run as docker runs them: `docker-credential-<name> get`
 * with the registry host on stdin. The helper is a small shell script on PATH that answers the test
 * registry's htpasswd user for that host (and says "credentials not found" for any other), and keeps
 * what it was asked on stdin.
 */
describe('docker credential helpers (credHelpers, credsStore) against docker-registry 2.8', () => {
  let reg: TestRegistry
  let dir: string
  let bin: string
  const asked = () => readFile(join(dir, 'asked'), 'utf8')

  beforeAll(async () => {
    reg = await startRegistry()
    dir = await mkdtemp(join(tmpdir(), 'cvm-cred-helper-'))
    bin = join(dir, 'bin')
    await mkdir(bin)
    const helper = join(bin, 'docker-credential-cvmtest')
    await writeFile(
      helper,
      [
        '#!/bin/sh',
        '[ "$1" = get ] || { echo "only get" >&2; exit 2; }',
        'host=$(cat)',
        `printf '%s' "$host" > '${join(dir, 'asked')}'`,
        `if [ "$host" = '${reg.host}' ]; then`,
        `  printf '{"ServerURL":"%s","Username":"%s","Secret":"%s"}' "$host" '${reg.user}' '${reg.password}'`,
        'else',
        '  echo "credentials not found in native keychain"',
        '  exit 1',
        'fi',
        '',
      ].join('\n'),
    )
    await chmod(helper, 0o755)
    // a helper that breaks: it prints the secret to stdout, not as JSON, and fails
    const leaky = join(bin, 'docker-credential-leaky')
    await writeFile(leaky, `#!/bin/sh\ncat >/dev/null\necho 'Secret=${reg.password}'\necho 'helper broke' >&2\nexit 3\n`)
    await chmod(leaky, 0o755)
  }, 60_000)
  afterAll(async () => {
    await reg?.stop()
    if (dir) await rm(dir, {recursive: true, force: true})
  })

  /** A docker config directory holding this config.json; PATH finds the helpers. */
  async function dockerConfig(name: string, config: unknown): Promise<NodeJS.ProcessEnv> {
    const d = join(dir, name)
    await mkdir(d, {recursive: true})
    await writeFile(join(d, 'config.json'), JSON.stringify(config))
    return {DOCKER_CONFIG: d, PATH: `${bin}:${process.env.PATH}`}
  }

  /** Reads a tag the registry lacks: 404 (undefined) with credentials it takes, an error without. */
  async function readWith(env: NodeJS.ProcessEnv): Promise<string> {
    const repo = parseOciReference(`oci://${reg.host}/team/stages`, '--cache-from')
    const client = new OciClient(repo, {caFile: reg.caFile, credentials: readRegistryCredentials(repo.host, repo.repository, env), timeoutMs: 10_000})
    return client.getManifest('base-absent').then(
      (m) => (m === undefined ? 'authenticated' : 'found'),
      (e: Error) => e.message,
    )
  }

  it('credHelpers: the host\'s helper is run with the host on stdin, and the registry takes what it answers', async () => {
    const env = await dockerConfig('helpers', {auths: {[reg.host]: {}}, credHelpers: {[reg.host]: 'cvmtest', 'other.example': 'missing'}})
    const creds = readRegistryCredentials(reg.host, 'team/stages', env)
    expect(await asked()).toBe(reg.host)
    expect(creds).toEqual({user: reg.user, password: reg.password, source: `docker-credential-cvmtest (named by credHelpers["${reg.host}"] in ${join(dir, 'helpers', 'config.json')})`})
    expect(await readWith(env)).toBe('authenticated')
  }, 30_000)

  it('credsStore: the store of every host is run the same way; a host it does not know falls to auths, else anonymous', async () => {
    const env = await dockerConfig('store', {auths: {[reg.host]: {}}, credsStore: 'cvmtest'})
    expect(await readWith(env)).toBe('authenticated')
    expect(readRegistryCredentials('elsewhere.example', 'x', env)).toBeUndefined()
    expect(await asked()).toBe('elsewhere.example')
    const withAuths = await dockerConfig('store-auths', {auths: {'elsewhere.example': {auth: Buffer.from('u:p').toString('base64')}}, credsStore: 'cvmtest'})
    expect(readRegistryCredentials('elsewhere.example', 'x', withAuths)?.user).toBe('u')
    // a store that is not installed is no refusal: the registry is asked anonymously, and says it needs credentials
    const absent = await dockerConfig('store-absent', {credsStore: 'not-installed'})
    expect(readRegistryCredentials(reg.host, 'team/stages', absent)).toBeUndefined()
    expect(await readWith(absent)).toMatch(/needs credentials, and none are given/)
  }, 30_000)

  it('a helper that is missing or fails is refused with what to do, and no message holds the secret', async () => {
    const missing = await dockerConfig('missing', {credHelpers: {[reg.host]: 'not-installed'}})
    expect(() => readRegistryCredentials(reg.host, 'team/stages', missing)).toThrow(expect.objectContaining({exitCode: 2, message: expect.stringMatching(/kept by docker-credential-not-installed .*, which is not on PATH$/)}))
    const leaky = await dockerConfig('leaky', {credHelpers: {[reg.host]: 'leaky'}})
    let e: Error & {hint?: string} = new Error('not thrown')
    try {
      readRegistryCredentials(reg.host, 'team/stages', leaky)
    } catch (x) {
      e = x as Error
    }
    expect(e.message).toMatch(/docker-credential-leaky .* failed \(exit 3\): helper broke$/)
    expect(`${e.message} ${e.hint} ${e.stack}`).not.toContain(reg.password)
    // a wrong password from a helper: the refusal names the user and the helper, never the password
    const wrong = join(bin, 'docker-credential-wrong')
    await writeFile(wrong, `#!/bin/sh\ncat >/dev/null\nprintf '{"ServerURL":"x","Username":"${reg.user}","Secret":"Wr0ng-${reg.password}"}'\n`)
    await chmod(wrong, 0o755)
    const refused = await readWith(await dockerConfig('wrong', {credHelpers: {[reg.host]: 'wrong'}}))
    expect(refused).toMatch(/refused the credentials of user cvm-ci \(from docker-credential-wrong/)
    expect(refused).not.toContain(reg.password)
  }, 30_000)
})
