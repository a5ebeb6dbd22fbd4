import {accessSync, constants, statSync} from 'node:fs'
import {homedir} from 'node:os'
import {join, resolve} from 'node:path'

import {checkSigningPair} from '../disk/secure-boot.js'
import {parseCcacheRemote} from '../kernel/ccache-remote.js'
import {parseIceccScheduler} from '../kernel/icecc.js'
import {CvmError, InputError} from '../errors.js'
import {DEFAULT_TARGET, parseTarget, type PublishTarget} from '../publish/target.js'
import {IMAGE_FORMATS, VALIDATION_MODES, type ImageFormat, type ValidationMode} from '../recipe/schema.js'
import {hostKeyPinFromFlag, type HostKeyPin} from '../remote/host-key.js'
import {parseOciReference} from '../remote/oci/reference.js'
import {readHostsFile, type HostsFile} from '../validate/hosts-file.js'
import {readPassphraseFile, readPrivateKeyFile} from '../util/private-key.js'
import {loadCacheSigner, loadTrustedKey} from './cache-signature.js'
import {STAGE_NAMES, type StageName} from './stage-names.js'

/**
 * The options table: every command-line option that more than one command takes, or that a build's
 * stages read, is one row here, with its type, its parser, its default, its help and, for a build
 * option, the field of BuildOptions it fills and how the stages see it (`key`: inputs() reads it, so
 * it is in a stage's cache key; `env`: run() gets it through StageEnv, because it cannot change an
 * output's bytes). The oclif flags (src/cli/flags.ts), BuildOptions and StageEnv (stage.ts) follow
 * from it, so an option is written once and has one name in every command (docs/design.md "Options").
 *
 * Every value is parsed when the command starts, before any stage runs: a bad one is refused with
 * exit 2 and nothing is written. Parsed values travel as types (a PublishTarget, a HostKeyPin, an
 * absolute path that exists), never as the string they came from.
 */

type Reach = {field: string; reaches: 'key' | 'env'}
interface RowBase {
  help: string
  /** the environment variable that sets it when the flag is absent */
  env?: string
  /** a repeatable option's environment variable is a list: its values separated by this (`:` for paths, as PATH) */
  envSeparator?: string
  /** its value is a path: one in the options config file is read from the file's folder */
  path?: true
  /** options it needs beside it, and options it excludes */
  dependsOn?: readonly string[]
  /** options of which it needs one beside it, any one */
  needsOneOf?: readonly string[]
  exclusive?: readonly string[]
  /** a build option: the BuildOptions field it fills, and whether the stages see it in their key or their env */
  build?: Reach
}
export type OptionRow =
  | (RowBase & {kind: 'string'; multiple?: false; choices?: readonly string[]; default?: string; parse: (raw: string) => unknown})
  | (RowBase & {kind: 'string'; multiple: true; choices?: readonly string[]; default?: readonly string[]; parse: (raw: string[]) => unknown})
  | (RowBase & {kind: 'boolean'; allowNo?: boolean; default?: boolean; parse: (raw: boolean) => unknown})
  | (RowBase & {kind: 'integer'; min?: number; default?: number; parse: (raw: number) => unknown})

/** ~/.cache/cvm-image, or $XDG_CACHE_HOME/cvm-image. */
export function defaultCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'cvm-image')
}

/** An existing regular file the user can read, as an absolute path. */
export function readableFile(path: string): string {
  const abs = resolve(path)
  const st = statSync(abs, {throwIfNoEntry: false})
  if (!st) throw new InputError(`${path}: no such file`, {hint: 'check the path'})
  if (!st.isFile()) throw new InputError(`${path} is not a file (it is a ${st.isDirectory() ? 'directory' : 'special file'})`, {hint: 'give the path of a file'})
  try {
    accessSync(abs, constants.R_OK)
  } catch {
    throw new InputError(`${path} cannot be read by this user`, {hint: `check its permissions (ls -l ${abs})`})
  }
  return abs
}

/** A private key file: readable, and open to nobody but its owner (src/util/private-key.ts), judged on entry. */
const privateKeyFile = (flag: string) => (raw: string): string => {
  const abs = readableFile(raw)
  readPrivateKeyFile(abs, {flag})
  return abs
}
/**
 * The row of a private key's passphrase file, --<key>-passphrase-file: its first line is the
 * passphrase, and the file is kept as a key is. A passphrase is never an argument (argv is public in
 * /proc). `build` for a key a build's stage reads.
 */
type PassphraseRow = {kind: 'string'; path: true; dependsOn: readonly string[]; help: string; parse: (raw: string) => string}
function passphraseRow<const B extends Reach>(key: string, what: string, build: B): PassphraseRow & {build: B}
function passphraseRow(key: string, what: string): PassphraseRow
function passphraseRow(key: string, what: string, build?: Reach): PassphraseRow & {build?: Reach} {
  const flag = `--${key}-passphrase-file`
  const parse = (raw: string): string => {
    const abs = readableFile(raw)
    readPassphraseFile(abs, {flag})
    return abs
  }
  return {kind: 'string', path: true, dependsOn: [key], help: `a file (mode 600) whose first line is ${what}'s passphrase`, parse, ...(build && {build})}
}

const SHA256 = /^[0-9a-f]{64}$/i
function sha256Value(raw: string): string {
  if (!SHA256.test(raw)) throw new InputError(`${JSON.stringify(raw)} is not a sha256`, {hint: 'give 64 hex digits, as sha256sum prints them'})
  return raw.toLowerCase()
}

/** A kernel git: an existing local clone, or a URL git can fetch from. */
function kernelGit(raw: string): string {
  if (/^(https?|git|ssh|file):\/\/\S+$/.test(raw) || /^[^@\s/]+@[^:\s/]+:\S+$/.test(raw)) return raw
  const st = statSync(raw, {throwIfNoEntry: false})
  if (st?.isDirectory()) return resolve(raw)
  throw new InputError(`${JSON.stringify(raw)} is neither a local kernel git clone nor a git URL`, {
    hint: 'give the path of a clone, or an https://, git://, ssh:// or file:// URL (or user@host:path)',
  })
}

/** user@host[:port]: checked here, kept as written (it is in the validate stage's key). */
function sshAddress(raw: string): string {
  const m = /^([^@\s:/]+)@(\[[^\]]+\]|[^@\s:/]+)(?::(\d{1,5}))?$/.exec(raw)
  if (!m || (m[3] !== undefined && (Number(m[3]) < 1 || Number(m[3]) > 65535))) {
    throw new InputError(`${JSON.stringify(raw)} is not an SSH address`, {hint: 'write it as user@host or user@host:port'})
  }
  return raw
}

/** A SHA256:... fingerprint, or a known_hosts file that exists. */
function hostKeyPin(raw: string): HostKeyPin {
  const pin = hostKeyPinFromFlag(raw)
  if (pin.knownHostsFile) pin.knownHostsFile = readableFile(pin.knownHostsFile)
  return pin
}

function stageName(raw: string): StageName {
  if (!(STAGE_NAMES as readonly string[]).includes(raw)) throw new InputError(`${JSON.stringify(raw)} is no stage`, {hint: `use one of ${STAGE_NAMES.join(', ')}`})
  return raw as StageName
}

/** --force: stage names, or all. */
export type ForceSpec = StageName[] | 'all'
function forceSpec(raw: string[]): ForceSpec {
  if (raw.includes('all')) return 'all'
  return raw.map((v) => {
    if (!(STAGE_NAMES as readonly string[]).includes(v)) throw new InputError(`${JSON.stringify(v)}: no stage of that name`, {hint: `use one of ${STAGE_NAMES.join(', ')}, or all`})
    return v as StageName
  })
}

const same = <T>(raw: T): T => raw
const SSH_PIN_HELP = 'pinned key: SHA256:<base64> fingerprint, or a known_hosts file [default: ~/.ssh/known_hosts]'

export const OPTIONS = {
  'cache-dir': {kind: 'string', path: true, env: 'CVM_IMAGE_CACHE', help: 'where stage outputs are cached [default: $XDG_CACHE_HOME/cvm-image or ~/.cache/cvm-image]', parse: (raw: string) => resolve(raw)},
  'kernel-git': {
    kind: 'string', path: true,
    env: 'CVM_IMAGE_KERNEL_GIT',
    help: 'kernel git (local clone or URL) to resolve upstream commits of the series from',
    parse: kernelGit,
    build: {field: 'kernelGit', reaches: 'env'},
  },
  'base-sha256': {kind: 'string', help: "sha256 you vouch for when the recipe's base image is unpinned", parse: sha256Value, build: {field: 'baseSha256', reaches: 'key'}},
  'base-file': {kind: 'string', path: true, help: "a local copy of the recipe's base image to use instead of downloading it", parse: readableFile, build: {field: 'baseFile', reaches: 'key'}},
  'kernel-source-file': {
    kind: 'string', path: true,
    help: "a local copy of the recipe's kernel source archive (checked against its sha256): needed for kernel.source kind archive, used instead of downloading a tarball or source RPM",
    parse: readableFile,
    build: {field: 'kernelSourceFile', reaches: 'env'},
  },
  control: {
    kind: 'boolean',
    help: "control build: apply only the series' build fixes, to validate the unpatched kernel and show what the backports fix (never published)",
    parse: same<boolean>,
    build: {field: 'control', reaches: 'key'},
  },
  mode: {
    kind: 'string',
    multiple: true,
    choices: VALIDATION_MODES,
    help: "validation mode (repeatable) [build: default the recipe's]",
    parse: (raw: string[]) => raw as ValidationMode[],
    build: {field: 'modes', reaches: 'key'},
  },
  // a pool of validation hosts (docs/host-pool.md): which hosts are in the validate stage's key, sorted; how long a boot waits for one is not
  host: {
    kind: 'string',
    multiple: true,
    help: 'validate on this host over SSH (user@host[:port]) instead of locally; repeatable: a pool, over which the boots spread, one boot per host at a time (docs/host-pool.md)',
    parse: (raw: string[]) => [...new Set(raw.map(sshAddress))],
    build: {field: 'validateHost', reaches: 'key'},
  },
  'hosts-file': {
    kind: 'string', path: true,
    exclusive: ['host'],
    help: 'validate on a pool of hosts over SSH: a file of lines `user@host[:port] SHA256:<host key fingerprint>` (docs/host-pool.md)',
    parse: (raw: string): HostsFile => readHostsFile(readableFile(raw)),
    build: {field: 'validateHostsFile', reaches: 'key'},
  },
  'host-wait': {
    kind: 'integer', min: 0,
    default: 1800,
    needsOneOf: ['host', 'hosts-file'],
    help: 'seconds a boot waits while every validation host is down or busy with another run, before the validation fails',
    parse: (raw: number) => raw * 1000,
    build: {field: 'validateHostWaitMs', reaches: 'env'},
  },
  'host-key': {kind: 'string', path: true, dependsOn: ['host'], help: `the validation host's ${SSH_PIN_HELP} (every --host's)`, parse: hostKeyPin, build: {field: 'validateHostKey', reaches: 'env'}},
  'known-hosts': {
    kind: 'string', path: true,
    dependsOn: ['host'],
    exclusive: ['host-key'],
    help: 'a known_hosts file holding the validation host key (the same as --host-key FILE)',
    parse: (raw: string): HostKeyPin => ({knownHostsFile: readableFile(raw)}),
  },
  identity: {
    kind: 'string',
    path: true,
    needsOneOf: ['host', 'hosts-file'],
    help: 'SSH private key for the validation hosts, mode 600 [default: the ssh-agent at $SSH_AUTH_SOCK]',
    parse: privateKeyFile('--identity'),
    build: {field: 'validateIdentity', reaches: 'env'},
  },
  'identity-passphrase-file': passphraseRow('identity', 'the --identity key', {field: 'validateIdentityPassphraseFile', reaches: 'env'}),
  'signing-key': {
    kind: 'string', path: true,
    dependsOn: ['signing-cert'],
    help: 'sign the UKI for UEFI Secure Boot with this RSA private key (PEM, mode 600; read only to sign, never copied into the cache or the release)',
    parse: privateKeyFile('--signing-key'),
    build: {field: 'signingKey', reaches: 'env'},
  },
  'signing-key-passphrase-file': passphraseRow('signing-key', 'the --signing-key', {field: 'signingKeyPassphraseFile', reaches: 'env'}),
  'signing-cert': {
    kind: 'string', path: true,
    dependsOn: ['signing-key'],
    help: "the X.509 certificate of --signing-key, as the firmware's signature database (db) holds it: in the stage key and the manifest",
    parse: readableFile,
    build: {field: 'signingCert', reaches: 'key'},
  },
  'secure-boot-vars': {
    kind: 'string', path: true,
    help: "validate the signed UKI under Secure Boot too, with a copy of this OVMF 4M variable store that enrolls the UKI's signing certificate in db [build default for Debian's snakeoil certificate: its OVMF_VARS_4M.snakeoil.fd; for another certificate, a copy of OVMF_VARS_4M.fd that enrolls it]",
    parse: readableFile,
    build: {field: 'secureBootVars', reaches: 'key'},
  },
  'no-validate': {kind: 'boolean', help: 'skip validation (every check reported skipped; publish then needs --allow-unvalidated)', parse: same<boolean>, build: {field: 'skipValidation', reaches: 'key'}},
  jobs: {kind: 'integer', min: 1, help: 'parallel compile jobs [default: the number of cores]', parse: same<number>, build: {field: 'jobs', reaches: 'env'}},
  'ccache-remote': {
    kind: 'string',
    env: 'CVM_IMAGE_CCACHE_REMOTE',
    help: "share compiled objects with a team through ccache's remote storage: redis://[PASSWORD@]HOST[:PORT][/DB], redis+unix:/SOCKET or http://HOST[:PORT]/PATH (give a password through CVM_IMAGE_CCACHE_REMOTE: argv is public)",
    parse: parseCcacheRemote,
    build: {field: 'ccacheRemote', reaches: 'env'},
  },
  // distributed compile (docs/sharing-compiles.md "Icecream"): where objects are compiled, never their bytes, so `env`
  'icecc-scheduler': {
    kind: 'string',
    env: 'CVM_IMAGE_ICECC_SCHEDULER',
    help: "compile the kernel through an icecream farm (Debian's icecc): the farm's scheduler, HOST[:PORT] (port 8765 by default); give --jobs the farm's size",
    parse: parseIceccScheduler,
    build: {field: 'iceccScheduler', reaches: 'env'},
  },
  // the stage cache in an OCI registry (src/pipeline/remote-cache.ts): where an output comes from, never its bytes, so `env`
  'cache-from': {
    kind: 'string',
    env: 'CVM_IMAGE_CACHE_FROM',
    help: 'take a stage output this build lacks from this OCI registry repository before running the stage, and a format file publish lacks before converting (oci://HOST[:PORT]/REPO): only one signed by a --cache-trust key',
    parse: (raw: string) => parseOciReference(raw, '--cache-from'),
    build: {field: 'cacheFrom', reaches: 'env'},
  },
  'cache-to': {
    kind: 'string',
    env: 'CVM_IMAGE_CACHE_TO',
    dependsOn: ['cache-key'],
    help: 'read stage outputs and format files from this OCI registry repository (oci://HOST[:PORT]/REPO) as --cache-from does, and push every one it lacks, signed with --cache-key',
    parse: (raw: string) => parseOciReference(raw, '--cache-to'),
    build: {field: 'cacheTo', reaches: 'env'},
  },
  'cache-key': {
    kind: 'string', path: true,
    env: 'CVM_IMAGE_CACHE_KEY',
    help: 'an Ed25519 private key in PEM (openssl genpkey -algorithm ed25519, mode 600) that signs what --cache-to pushes; its public half is trusted too',
    parse: (raw: string): string => {
      const abs = readableFile(raw)
      loadCacheSigner(abs)
      return abs
    },
    build: {field: 'cacheKey', reaches: 'env'},
  },
  'cache-trust': {
    kind: 'string', path: true,
    multiple: true,
    env: 'CVM_IMAGE_CACHE_TRUST',
    envSeparator: ':',
    help: 'a PEM Ed25519 public key (repeatable; CVM_IMAGE_CACHE_TRUST: paths separated by colons, as PATH) whose signed registry entries this build takes; an entry signed by no such key is built here',
    parse: (raw: string[]) => raw.map((f) => {
      const abs = readableFile(f)
      loadTrustedKey(abs)
      return abs
    }),
    build: {field: 'cacheTrust', reaches: 'env'},
  },
  'cache-ca': {
    kind: 'string', path: true,
    env: 'CVM_IMAGE_CACHE_CA',
    help: "a PEM CA file the registry's TLS certificate chains to [default: Node's CA roots]",
    parse: readableFile,
    build: {field: 'cacheCa', reaches: 'env'},
  },
  force: {kind: 'string', multiple: true, help: 'rerun this stage even if cached (repeatable; "all" for every stage)', parse: forceSpec},
  until: {kind: 'string', choices: STAGE_NAMES, help: 'stop after this stage (its build record is builds/<id>.partial.json; builds/<id>.json stays the last complete build)', parse: stageName},
  'lock-timeout': {kind: 'integer', min: 0, default: 6 * 3600, help: 'seconds to wait for another build holding a stage lock', parse: (raw: number) => raw * 1000},
  publish: {
    kind: 'string', path: true,
    default: DEFAULT_TARGET,
    help: 'where to publish: a directory (dir:PATH or PATH) or sftp://user@host[:port]/path',
    parse: (raw: string): PublishTarget => parseTarget(raw),
  },
  'no-publish': {kind: 'boolean', help: 'stop after validation', parse: same<boolean>},
  'publish-host-key': {kind: 'string', path: true, help: `the SFTP target's ${SSH_PIN_HELP}`, parse: hostKeyPin},
  'publish-identity': {kind: 'string', path: true, help: 'SSH private key for the SFTP target, mode 600 [default: the ssh-agent at $SSH_AUTH_SOCK]', parse: privateKeyFile('--publish-identity')},
  'publish-identity-passphrase-file': passphraseRow('publish-identity', 'the --publish-identity key'),
  'allow-unvalidated': {kind: 'boolean', help: 'publish even if validation failed or did not run (recorded in the manifest)', parse: same<boolean>},
  format: {kind: 'string', multiple: true, choices: IMAGE_FORMATS, help: "publish this format instead of the recipe's (repeatable)", parse: (raw: string[]) => raw as ImageFormat[]},
  'release-key': {
    kind: 'string', path: true,
    help: 'an OpenPGP secret key file (gpg --armor --export-secret-keys, mode 600) holding one key: adds SHA256SUMS.gpg',
    parse: privateKeyFile('--release-key'),
  },
  'release-key-passphrase-file': passphraseRow('release-key', 'the release key'),
  'attestation-key': {
    kind: 'string', path: true,
    help: 'an Ed25519 private key in PEM (openssl genpkey -algorithm ed25519, mode 600): signs provenance.intoto.json and validation.intoto.json as DSSE envelopes',
    parse: privateKeyFile('--attestation-key'),
  },
  'attestation-key-passphrase-file': passphraseRow('attestation-key', 'the --attestation-key'),
  'kernel-meta': {kind: 'string', path: true, help: "compile's kernel.json: the release and version the booted kernel must report", parse: readableFile},
  'secure-boot-cert': {
    kind: 'string', path: true,
    exclusive: ['secure-boot-vars'],
    help: 'also boot the disk alone under Secure Boot (emulated), with a copy of the plain OVMF 4M variable store that enrolls this certificate (PEM) as PK, KEK and db: the one that signed the UKI',
    parse: readableFile,
  },
  measurements: {
    kind: 'string', path: true,
    help: "compare the vTPM's PCRs with a release's expected measurements (its manifest.json, or `cvm-image measure --json`) instead of the disk's own UKI",
    parse: readableFile,
  },
  key: {
    kind: 'string', path: true,
    multiple: true,
    help: 'a public key to check signatures with (repeatable): OpenPGP (gpg --export) for SHA256SUMS.gpg, PEM (-----BEGIN PUBLIC KEY-----) for the DSSE envelopes',
    parse: (raw: string[]) => raw.map(readableFile),
  },
} as const satisfies Record<string, OptionRow>

type Options = typeof OPTIONS
export type OptionName = keyof Options
/** what a row's parser gives */
export type Parsed<K extends OptionName> = ReturnType<Options[K]['parse']>
type BuildRowName = {[K in OptionName]: Options[K] extends {build: Reach} ? K : never}[OptionName]
type FieldOf<K extends BuildRowName> = Options[K] extends {build: {field: infer F extends string}} ? F : never
/** the fields of BuildOptions */
export type BuildOptionName = FieldOf<BuildRowName>
type EnvRowName = {[K in BuildRowName]: Options[K] extends {build: {reaches: 'env'}} ? K : never}[BuildRowName]

/** Options a build's stages read, by field: what the rows with `build` give. */
export type BuildOptions = {[K in BuildRowName as FieldOf<K>]?: Parsed<K>}
/** The build options run() sees through StageEnv: the rows that reach stages by `env`. */
export type EnvOptions = {[K in EnvRowName as FieldOf<K>]?: Parsed<K>}

/** Parsed values by option name: an option with a default always has one. */
export type ParsedOptions<N extends OptionName> = {[K in N]: Options[K] extends {default: unknown} ? Parsed<K> : Parsed<K> | undefined}

/** Where values come from besides the flags: the options config file (options-config.ts) and a command's own defaults. */
export interface OptionSources {
  config?: {file: string; values: Partial<Record<OptionName, unknown>>}
  /** a default of the command's that replaces the row's (validate's --mode: the schema's default modes) */
  defaults?: Partial<Record<OptionName, unknown>>
}

/** Rows checked together, once each has parsed: a pair that must agree. */
const CHECKS: {needs: readonly OptionName[]; check(o: Partial<Record<OptionName, unknown>>): void}[] = [
  // a key and certificate that cannot sign together are refused before any work
  {
    needs: ['signing-key', 'signing-cert'],
    check: (o) => void checkSigningPair({keyFile: o['signing-key'] as string, certFile: o['signing-cert'] as string, passphraseFile: o['signing-key-passphrase-file'] as string | undefined}),
  },
]

/**
 * Parses the named options from oclif's raw values, every one before any work, and refuses them all
 * at once (one InputError, a detail line per option) when any is wrong.
 */
export function parseOptions<N extends OptionName>(names: readonly N[], raw: Record<string, unknown>, sources: OptionSources = {}): ParsedOptions<N> {
  const out: Partial<Record<OptionName, unknown>> = {}
  const given = new Set<OptionName>()
  const problems: {what: string; e: CvmError}[] = []
  const refuse = (what: string, e: unknown) => {
    if (!(e instanceof CvmError)) throw e
    problems.push({what, e})
  }
  for (const name of names) {
    // the flag (or its environment variable, which oclif reads), else the config file, else the default
    const fromConfig = raw[name] === undefined ? sources.config?.values[name] : undefined
    const row: OptionRow = OPTIONS[name]
    let value = raw[name] ?? fromConfig ?? sources.defaults?.[name] ?? row.default
    // oclif gives a repeatable option's environment variable as its one string: the list it holds
    if (typeof value === 'string' && row.kind === 'string' && row.multiple) value = value.split(row.envSeparator ?? ',').filter((v) => v !== '')
    if (value === undefined) continue
    if (raw[name] !== undefined || fromConfig !== undefined) given.add(name)
    try {
      out[name] = (OPTIONS[name].parse as (v: unknown) => unknown)(value)
    } catch (e) {
      refuse(fromConfig === undefined ? `--${name}` : `${name} (from ${sources.config!.file})`, e)
    }
  }
  // oclif checks these for flags; a value from the config file is held to them here
  for (const name of Object.keys(out) as OptionName[]) {
    const row: OptionRow = OPTIONS[name]
    for (const d of row.dependsOn ?? []) if ((names as readonly string[]).includes(d) && out[d as OptionName] === undefined) refuse(`--${name}`, new InputError(`it needs --${d} beside it`))
    // a default needs nothing beside it
    const oneOf = (given.has(name) && row.needsOneOf?.filter((d) => (names as readonly string[]).includes(d))) || []
    if (oneOf.length && !oneOf.some((d) => out[d as OptionName] !== undefined)) refuse(`--${name}`, new InputError(`it needs ${oneOf.map((d) => `--${d}`).join(' or ')} beside it`))
    for (const x of row.exclusive ?? []) if (out[x as OptionName] !== undefined && raw[x] === undefined) refuse(`--${name}`, new InputError(`it cannot go with --${x}`))
  }
  for (const c of CHECKS) {
    if (!c.needs.every((n) => (names as readonly string[]).includes(n) && out[n] !== undefined)) continue
    try {
      c.check(out)
    } catch (e) {
      refuse(c.needs.map((n) => `--${n}`).join(' with '), e)
    }
  }
  const nothingDone = 'nothing was done: fix it and run the command again'
  if (problems.length === 1) {
    const [{what, e}] = problems
    throw new InputError(`${what}: ${e.message}`, {hint: e.hint ? `${e.hint}; ${nothingDone}` : nothingDone})
  }
  if (problems.length > 1) {
    throw new InputError(`${problems.length} options are wrong`, {details: problems.map(({what, e}) => `${what}: ${e.message}${e.hint ? ` (${e.hint})` : ''}`), hint: nothingDone})
  }
  return out as ParsedOptions<N>
}

const BUILD_ROWS = (Object.keys(OPTIONS) as OptionName[]).flatMap((name) => {
  const row: OptionRow = OPTIONS[name]
  return row.build ? [{name, ...row.build}] : []
})

/** The option names whose rows fill BuildOptions, for the commands that build (build, plan, kernel check). */
export const BUILD_OPTION_NAMES = BUILD_ROWS.map((r) => r.name) as BuildRowName[]

/** BuildOptions from parsed options: each row with `build` fills its field. */
export function buildOptionsOf(parsed: Partial<Record<OptionName, unknown>>): BuildOptions {
  const o: Record<string, unknown> = {}
  for (const r of BUILD_ROWS) if (parsed[r.name] !== undefined) o[r.field] = parsed[r.name]
  return o as BuildOptions
}

/** The part of BuildOptions that run() may see: the rows that reach stages by `env`. */
export function envOptionsOf(options: BuildOptions): EnvOptions {
  const o: Record<string, unknown> = {}
  const all = options as Record<string, unknown>
  for (const r of BUILD_ROWS) if (r.reaches === 'env' && all[r.field] !== undefined) o[r.field] = all[r.field]
  return o as EnvOptions
}
