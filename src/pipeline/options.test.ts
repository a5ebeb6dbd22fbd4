import {generateKeyPairSync} from 'node:crypto'
import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {inspect} from 'node:util'

import {describe, expect, it} from 'vitest'

import {repoRoot} from '../../test/helpers/paths.js'
import {inputRefusal} from '../../test/helpers/refusal.js'
import {SNAKEOIL_CERT, decryptedSnakeoilKey} from '../../test/helpers/snakeoil.js'
import {InputError} from '../errors.js'
import {projectDirs, RecipeStore} from '../recipe/load.js'
import {canonicalJson, type Json} from '../util/fsx.js'
import {BUILD_OPTION_NAMES, OPTIONS, buildOptionsOf, parseOptions, type BuildOptionName, type OptionName} from './options.js'
import {loadOptionsConfig, type OptionsConfig} from './options-config.js'
import {stageKey} from './plan.js'
import {stageEnv, type BuildContext, type StageName} from './stage.js'
import {STAGES} from './stages/index.js'

const work = mkdtempSync(join(tmpdir(), 'cvm-options-'))
const dirs = projectDirs(repoRoot)
const store = new RecipeStore(dirs)

/** Every stage's own key (inputs only) for a recipe and options, as plan computes it. */
/** BuildOptions from raw values, each parsed by its row alone (the pairs' checks are parseOptions' own test) */
const optionsOf = (raw: Record<string, unknown>) => buildOptionsOf(Object.assign({}, ...Object.entries(raw).map(([n, v]) => parseOptions([n as OptionName], {[n]: v}))))

async function ownKeys(recipeId: string, raw: Record<string, unknown>): Promise<Record<StageName, string>> {
  const ctx: BuildContext = {recipe: store.load(recipeId), dirs, options: optionsOf(raw), cacheDir: '/nonexistent'}
  const keys = {} as Record<StageName, string>
  for (const stage of STAGES) keys[stage.name] = stageKey(stage, JSON.parse(canonicalJson((await stage.inputs(ctx)) as Json)) as Json, {})
  return keys
}

/**
 * For each build option, a value to set it to, the recipe where it matters (an image base for the
 * base options) and what it needs beside it. The type lists every build row of the table: a row
 * added without a case here does not compile.
 */
function cases(): Record<BuildOptionName, {value: unknown; recipe?: string; with?: Record<string, unknown>}> {
  // mode 600: a file that stands for a private key must be one only its owner reads
  const file = join(work, 'a-file')
  writeFileSync(file, 'x', {mode: 0o600})
  const pass = join(work, 'passphrase')
  writeFileSync(pass, 'snakeoil\n', {mode: 0o600})
  const key = join(work, 'snakeoil.key')
  const cacheKey = join(work, 'cache-key.pem')
  const cachePub = join(work, 'cache-key.pub')
  const pair = generateKeyPairSync('ed25519')
  writeFileSync(cacheKey, pair.privateKey.export({type: 'pkcs8', format: 'pem'}), {mode: 0o600})
  writeFileSync(cachePub, pair.publicKey.export({type: 'spki', format: 'pem'}))
  const hostsFile = join(work, 'hosts')
  writeFileSync(hostsFile, `# the pool\nroot@epyc SHA256:${'A'.repeat(43)}\nroot@epyc2:2222 SHA256:${'B'.repeat(43)}\n`)
  return {
    kernelGit: {value: work},
    baseSha256: {value: 'ab'.repeat(32), recipe: 'ubuntu-20.04'},
    baseFile: {value: file, recipe: 'ubuntu-20.04'},
    kernelSourceFile: {value: file},
    control: {value: true},
    modes: {value: ['sev']},
    validateHost: {value: ['root@epyc']},
    validateHostsFile: {value: hostsFile},
    validateHostWaitMs: {value: 60, with: {host: ['root@epyc']}},
    validateHostKey: {value: 'SHA256:' + 'A'.repeat(43)},
    validateIdentity: {value: file},
    validateIdentityPassphraseFile: {value: pass, with: {identity: file}},
    signingKey: {value: key, with: {'signing-cert': SNAKEOIL_CERT}},
    signingCert: {value: SNAKEOIL_CERT, with: {'signing-key': key}},
    signingKeyPassphraseFile: {value: pass, with: {'signing-key': key, 'signing-cert': SNAKEOIL_CERT}},
    secureBootVars: {value: file, with: {'signing-cert': SNAKEOIL_CERT, 'signing-key': key}},
    skipValidation: {value: true},
    jobs: {value: 7},
    ccacheRemote: {value: 'redis://s3cret@127.0.0.1:6379'},
    iceccScheduler: {value: 'icecc.example:10000'},
    cacheFrom: {value: 'oci://registry.example:5000/team/stages'},
    cacheTo: {value: 'oci://registry.example:5000/team/stages', with: {'cache-key': cacheKey}},
    cacheKey: {value: cacheKey},
    cacheTrust: {value: [cachePub]},
    cacheCa: {value: file},
  }
}

/** The InputError parseOptions refuses these with. */
function refused(names: OptionName[], raw: Record<string, unknown>, config?: OptionsConfig): InputError {
  return inputRefusal(() => parseOptions(names, raw, {config}))
}

const rowOf = (field: BuildOptionName) => BUILD_OPTION_NAMES.find((n) => (OPTIONS[n] as {build: {field: string}}).build.field === field)!

describe('the options table: each build row reaches the stages the way it says', () => {
  it('a `key` row changes a stage key and is not in StageEnv; an `env` row changes no key and is', async () => {
    await decryptedSnakeoilKey(join(work, 'snakeoil.key'))
    const problems: string[] = []
    for (const [field, c] of Object.entries(cases()) as [BuildOptionName, ReturnType<typeof cases>[BuildOptionName]][]) {
      const name = rowOf(field)
      const reaches = (OPTIONS[name] as {build: {reaches: string}}).build.reaches
      const recipe = c.recipe ?? 'debian-12'
      const before = await ownKeys(recipe, {...c.with})
      const after = await ownKeys(recipe, {...c.with, [name]: c.value})
      const changed = STAGES.map((s) => s.name).filter((n) => before[n] !== after[n])
      const options = optionsOf({...c.with, [name]: c.value})
      const inEnv = field in stageEnv({recipe: store.load(recipe), dirs, options, cacheDir: '/c'})
      if (reaches === 'key' && !changed.length) problems.push(`--${name} (key) changed no stage key`)
      if (reaches === 'key' && inEnv) problems.push(`--${name} (key) reached run() through StageEnv`)
      if (reaches === 'env' && changed.length) problems.push(`--${name} (env) changed the keys of [${changed}]`)
      if (reaches === 'env' && !inEnv) problems.push(`--${name} (env) is missing from StageEnv`)
    }
    expect(problems).toEqual([])
  }, 60_000)

  it('gives every build row a field of its own', () => {
    const fields = BUILD_OPTION_NAMES.map((n) => (OPTIONS[n] as {build: {field: string}}).build.field)
    expect(new Set(fields).size).toBe(fields.length)
    expect([...fields].sort()).toEqual(Object.keys(cases()).sort())
  })
})

describe('parseOptions: every value is judged before any work, all at once', () => {
  it('parses values into their types', () => {
    const o = parseOptions(['publish', 'host-key', 'base-sha256', 'force', 'lock-timeout', 'cache-dir'], {
      publish: 'sftp://rel@img.example.com:2222/srv/cvm',
      'host-key': 'SHA256:' + 'b'.repeat(43),
      'base-sha256': 'AB'.repeat(32),
      force: ['compile', 'base'],
      'lock-timeout': 5,
      'cache-dir': 'rel/cache',
    })
    expect(o.publish).toEqual({kind: 'sftp', user: 'rel', host: 'img.example.com', port: 2222, path: '/srv/cvm'})
    expect(o['host-key']).toEqual({hostKey: 'SHA256:' + 'b'.repeat(43)})
    expect(o['base-sha256']).toBe('ab'.repeat(32))
    expect(o.force).toEqual(['compile', 'base'])
    expect(o['lock-timeout']).toBe(5000)
    expect(o['cache-dir']).toBe(join(process.cwd(), 'rel/cache'))
  })

  it('refuses a publish target of an unknown kind, naming the option', () => {
    const e = refused(['publish'], {publish: 'ftp://h/x'})
    expect(e.message).toMatch(/^--publish: publish target "ftp:\/\/h\/x": only directories and sftp/)
    expect(e.hint).toMatch(/nothing was done/)
  })

  it('refuses each bad value, every one in one error', () => {
    const e = refused(['kernel-git', 'base-sha256', 'host', 'host-key', 'identity', 'base-file', 'force', 'publish-host-key'], {
      'kernel-git': join(work, 'no-such-clone'),
      'base-sha256': '12',
      host: ['epyc'],
      'host-key': join(work, 'no-known-hosts'),
      identity: work,
      'base-file': join(work, 'missing.qcow2'),
      force: ['compil'],
      'publish-host-key': 'SHA256:short',
    })
    expect(e.message).toBe('8 options are wrong')
    expect(e.details.map((d) => d.split(':')[0])).toEqual(['--kernel-git', '--base-sha256', '--host', '--host-key', '--identity', '--base-file', '--force', '--publish-host-key'])
    expect(e.details[4]).toMatch(/is not a file \(it is a directory\)/)
  })

  it('refuses a ccache remote ccache cannot read, naming the option and never its password', () => {
    for (const [raw, why] of [
      ['https://u:s3cret@cache.example/c', /no HTTPS/],
      ['ftp://s3cret@cache.example', /scheme ftp is not one ccache reads/],
      ['redis://:s3cret@', /names no host|not a URL/],
      ['redis://s3cret@a redis://b', /holds a space/],
      ['redis://:s3cret@h|timeout 5', /space/],
      ['redis://:s3cret@h|Bad=1', /not a ccache attribute/],
      ['cache.example:6379', /scheme cache.example|not a URL/],
    ] as const) {
      const e = refused(['ccache-remote'], {'ccache-remote': raw})
      expect(e.message, raw).toMatch(/^--ccache-remote: .* is not a ccache remote storage URL: /)
      expect(e.message, raw).toMatch(why)
      expect(`${e.message} ${e.hint}`, raw).not.toContain('s3cret')
    }
    const o = parseOptions(['ccache-remote'], {'ccache-remote': 'redis://:s3cret@cache.example:6380/2|connect-timeout=500'})
    // redis-cli's :PASSWORD form becomes ccache's own (ccache 4.7 sends no AUTH for an empty user)
    expect(o['ccache-remote']!.storage()).toBe('redis://s3cret@cache.example:6380/2|connect-timeout=500')
    expect([String(o['ccache-remote']), JSON.stringify(o), inspect(o)].join(' ')).not.toContain('s3cret')
    expect(o['ccache-remote']!.shownAs).toBe('redis://***@cache.example:6380/2|connect-timeout=500')
    expect(parseOptions(['ccache-remote'], {'ccache-remote': 'redis+unix:/run/redis/redis.sock'})['ccache-remote']!.storage()).toBe('redis+unix:/run/redis/redis.sock')
    expect(parseOptions(['ccache-remote'], {'ccache-remote': 'http://cache.example:8080/ccache'})['ccache-remote']!.shownAs).toBe('http://cache.example:8080/ccache')
  })

  it('takes an icecream scheduler as HOST[:PORT] (8765 by default), from the flag or CVM_IMAGE_ICECC_SCHEDULER, and refuses what icecc cannot reach', () => {
    expect(parseOptions(['icecc-scheduler'], {'icecc-scheduler': 'icecc.example'})['icecc-scheduler']).toEqual({host: 'icecc.example', port: 8765})
    expect(parseOptions(['icecc-scheduler'], {'icecc-scheduler': '10.0.0.5:10000'})['icecc-scheduler']).toEqual({host: '10.0.0.5', port: 10000})
    expect(OPTIONS['icecc-scheduler'].env).toBe('CVM_IMAGE_ICECC_SCHEDULER')
    for (const [raw, why] of [
      ['tcp://icecc.example:8765', /it is a URL/],
      ['[fd00::5]:8765', /IPv4 only/],
      ['fd00::5', /IPv4 only/],
      ['icecc.example:0', /port 0 is out of range/],
      ['icecc.example:70000', /port 70000 is out of range/],
      ['icecc example', /is not an icecream scheduler address/],
      ['', /is not an icecream scheduler address/],
    ] as const) {
      const e = refused(['icecc-scheduler'], {'icecc-scheduler': raw})
      expect(e.message, raw).toMatch(/^--icecc-scheduler: /)
      expect(e.message, raw).toMatch(why)
    }
  })

  it('refuses a port past 65535, and a validation host\'s key or identity without --host', () => {
    expect(refused(['host'], {host: ['root@epyc', 'root@epyc:70000']}).message).toMatch(/^--host: "root@epyc:70000" is not an SSH address/)
    // repeatable: a pool, each host once
    expect(parseOptions(['host'], {host: ['root@epyc:2222', 'root@epyc2', 'root@epyc:2222']}).host).toEqual(['root@epyc:2222', 'root@epyc2'])
    const e = refused(['host', 'host-key'], {'host-key': 'SHA256:' + 'd'.repeat(43)})
    expect(e.message).toBe('--host-key: it needs --host beside it')
    // the identity and the wait serve a hosts file's pool too; alone they are refused
    const pool = ['host', 'hosts-file', 'identity', 'host-wait'] as const
    const key = join(work, 'pool-key')
    writeFileSync(key, 'x', {mode: 0o600})
    expect(refused([...pool], {identity: key}).message).toBe('--identity: it needs --host or --hosts-file beside it')
    const noHost = refused([...pool], {'host-wait': 5})
    expect(noHost.message).toBe('--host-wait: it needs --host or --hosts-file beside it')
    const hosts = join(work, 'pool-hosts')
    writeFileSync(hosts, `root@epyc SHA256:${'e'.repeat(43)}\n`)
    expect(parseOptions([...pool], {'hosts-file': hosts, identity: key, 'host-wait': 5})).toMatchObject({'hosts-file': {file: hosts, hosts: [{address: 'root@epyc', hostKey: `SHA256:${'e'.repeat(43)}`}]}, identity: key, 'host-wait': 5000})
  })

  it('refuses a hosts file naming the file and the line of what is wrong (exit 2), before any work', () => {
    const fp = (c: string) => `SHA256:${c.repeat(43)}`
    const cases: [string, RegExp][] = [
      [`# pool\n\nroot@epyc ${fp('a')}\nroot@epyc2\n`, /:4: a host without its pinned host key: "root@epyc2"/],
      [`root@epyc ${fp('a')} extra\n`, /:1: 3 fields where two belong/],
      [`epyc ${fp('a')}\n`, /:1: "epyc" is not an SSH address/],
      [`root@epyc:70000 ${fp('a')}\n`, /:1: "root@epyc:70000" has no TCP port 70000/],
      [`root@epyc SHA256:short\n`, /:1: "SHA256:short" is not a SHA256 host key fingerprint/],
      [`root@epyc ${fp('a')}\n  root@epyc   ${fp('b')}\n`, /:2: root@epyc is listed already on line 1/],
      ['# nothing but comments\n\n', /lists no host/],
    ]
    for (const [i, [text, why]] of cases.entries()) {
      const file = join(work, `bad-hosts-${i}`)
      writeFileSync(file, text)
      const e = refused(['hosts-file'], {'hosts-file': file})
      expect(e.exitCode).toBe(2)
      expect(e.message.startsWith(`--hosts-file: ${file}`)).toBe(true)
      expect(e.message).toMatch(why)
    }
    expect(refused(['hosts-file'], {'hosts-file': join(work, 'no-such-hosts')}).message).toMatch(/no such file/)
  })

  it('refuses every private key file open to group or others on entry, giving the chmod', () => {
    const open = join(work, 'open-key')
    writeFileSync(open, 'x', {mode: 0o644})
    const rows = ['identity', 'signing-key', 'publish-identity', 'release-key', 'attestation-key', 'release-key-passphrase-file'] as const
    const e = refused([...rows], Object.fromEntries(rows.map((r) => [r, open])))
    expect(e.details).toHaveLength(rows.length)
    for (const d of e.details) expect(d).toMatch(/open to group or others \(mode 0644\).*chmod 600/)
  })

  it('refuses a signing key that is not the certificate\'s, naming both options', async () => {
    const other = join(work, 'other.key')
    const {run} = await import('../util/exec.js')
    await run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', other], {what: 'make a key (openssl)'})
    const e = refused(['signing-key', 'signing-cert'], {'signing-key': other, 'signing-cert': SNAKEOIL_CERT})
    expect(e.message).toMatch(/^--signing-key with --signing-cert: .* is not the key of --signing-cert/)
  })
})

describe('the options config file: after the flag and its environment variable, before the default', () => {
  const config = (text: string): NodeJS.ProcessEnv => {
    const file = join(work, `config-${Math.random().toString(16).slice(2)}.yaml`)
    writeFileSync(file, text)
    return {CVM_IMAGE_CONFIG: file}
  }

  it('gives values of their rows\' kinds, paths read from the file\'s folder', () => {
    const env = config(['publish: dir:releases', 'cache-dir: cache', 'mode: [emulated, sev]', 'jobs: 3', 'no-validate: true', 'kernel-git: git@example.org:linux', 'host-key: SHA256:' + 'c'.repeat(43)].join('\n'))
    const c = loadOptionsConfig(env)!
    expect(c.values).toEqual({
      publish: `dir:${join(work, 'releases')}`,
      'cache-dir': join(work, 'cache'),
      mode: ['emulated', 'sev'],
      jobs: 3,
      'no-validate': true,
      'kernel-git': 'git@example.org:linux',
      'host-key': 'SHA256:' + 'c'.repeat(43),
    })
  })

  it('a flag beats the file, the file beats the default, and a value from the file is parsed like a flag', () => {
    const c = loadOptionsConfig(config('publish: sftp://rel@img.example.com/cvm\nlock-timeout: 60'))
    const o = parseOptions(['publish', 'lock-timeout', 'mode'], {'lock-timeout': 5}, {config: c, defaults: {mode: ['emulated']}})
    expect(o.publish).toEqual({kind: 'sftp', user: 'rel', host: 'img.example.com', port: 22, path: '/cvm'})
    expect(o['lock-timeout']).toBe(5000)
    expect(o.mode).toEqual(['emulated'])
    expect(parseOptions(['publish'], {}).publish).toEqual({kind: 'dir', path: join(process.cwd(), 'out')})
  })

  it('refuses a bad value from the file naming the file, and holds it to the flags\' dependencies', () => {
    const c = loadOptionsConfig(config('publish: ftp://h/x'))!
    const e = refused(['publish'], {}, c)
    expect(e.message).toBe(`publish (from ${c.file}): publish target "ftp://h/x": only directories and sftp:// are supported`)
    const key = join(work, 'dep.key')
    writeFileSync(key, 'x', {mode: 0o600})
    const d = refused(['identity-passphrase-file', 'identity'], {}, loadOptionsConfig(config(`identity-passphrase-file: ${key}`)))
    expect(d.message).toMatch(/^--identity-passphrase-file: it needs --identity beside it/)
  })

  it('refuses a key the table lacks, a value of the wrong kind and one not among the choices, each at its line', () => {
    const env = config('publsh: ./out\njobs: many\nmode: [emulated, sev-snp]\n')
    const e = inputRefusal(() => loadOptionsConfig(env))
    expect(e.message).toBe(`${env.CVM_IMAGE_CONFIG}: 3 values are wrong`)
    expect(e.details).toEqual([
      `${env.CVM_IMAGE_CONFIG}:1:1: no option "publsh" (the options are those of the flags, without the dashes)`,
      `${env.CVM_IMAGE_CONFIG}:2:7: jobs: must be a whole number`,
      // sev-snp is the kernel feature's name; the mode is snp
      `${env.CVM_IMAGE_CONFIG}:3:7: mode: "sev-snp" is not one of emulated, sev, sev-es, snp, tdx`,
    ])
    expect(() => loadOptionsConfig({CVM_IMAGE_CONFIG: join(work, 'none.yaml')})).toThrow(/CVM_IMAGE_CONFIG names .*none\.yaml, which does not exist/)
    expect(loadOptionsConfig({XDG_CONFIG_HOME: join(work, 'no-such-home')})).toBeUndefined()
  })
})
