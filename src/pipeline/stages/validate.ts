import {existsSync} from 'node:fs'
import {readdir, readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {StageError} from '../../errors.js'
import type {ValidationMode} from '../../recipe/schema.js'
import {readSigningCertificate} from '../../disk/secure-boot.js'
import {sha256MemoDir} from '../../util/extent-hash.js'
import {sha256, sha256File} from '../../util/fsx.js'
import {OVMF_VARS, OVMF_VARS_SNAKEOIL, SNAKEOIL_CERT} from '../../validate/host-probe.js'
import {markerLine} from '../../validate/marker.js'
import {PROBE_SOURCE} from '../../validate/nvme-probe.js'
import {validateOnHost, writeSkippedReport} from '../../validate/run.js'
import {ENROLLED_STORE, writeEnrolledStore} from '../../validate/secure-boot-store.js'
import type {ValidateResult} from '../results.js'
import type {BuildContext, StageOf} from '../stage.js'

function modesOf(ctx: BuildContext): ValidationMode[] {
  return (ctx.options.modes as ValidationMode[] | undefined) ?? ctx.recipe.recipe.validate.modes
}

/** The seed templates are part of what a validation did, so they are part of its key. */
async function seedTemplatesDigest(templatesDir: string): Promise<string> {
  const dir = join(templatesDir, 'seed')
  const names = (await readdir(dir)).sort()
  const parts = await Promise.all(names.map(async (n) => `${n}\0${sha256(await readFile(join(dir, n)))}`))
  return sha256(parts.join('\n'))
}

/** The validation asked for: modes, guest size, host, and the seed templates. */
export interface ValidateInputs {
  modes: ValidationMode[]
  memoryMiB: number
  cpus: number
  bootTimeoutS: number
  hostname: string
  /** the kernel line, whose series' marker line the booted kernel must print */
  line: string
  /**
   * where it runs: null (this machine), the one host, or the pool's hosts, sorted (docs/host-pool.md).
   * One host is a string, as before pools, so its validations stay cached.
   */
  host: string | string[] | null
  /** a hosts file's pinned keys by address: they reach run() only here (absent without a hosts file) */
  hostKeys?: Record<string, string>
  skip: boolean
  control: boolean
  seedTemplates: string
  /** the NVMe offset probe's C source, built on the validating machine and run in the guest */
  probe: string
  /**
   * a signed UKI is booted under Secure Boot too, with this variable store (its path and sha256),
   * or with a copy of the plain store (its path and sha256) that enrolls the signing certificate
   * (its PEM), made when the stage runs; without a plain store, why not; null for an unsigned UKI
   */
  secureBoot: {vars: string; varsSha256: string} | {enroll: {certPem: string; base: string; baseSha256: string}} | {notRun: string} | null
}

/**
 * Which variable store validates a UKI signed with --signing-cert under Secure Boot: --secure-boot-vars,
 * else Debian's snakeoil store for Debian's snakeoil certificate (the one it enrolls), else a copy
 * of the plain store with the certificate enrolled (made when the stage runs).
 */
export async function secureBootValidation(options: Pick<BuildContext['options'], 'signingCert' | 'secureBootVars'>): Promise<ValidateInputs['secureBoot']> {
  if (!options.signingCert) return null
  const withVars = async (vars: string) => ({vars, varsSha256: await sha256File(vars)})
  if (options.secureBootVars) return withVars(options.secureBootVars)
  const cert = readSigningCertificate(options.signingCert)
  if (existsSync(SNAKEOIL_CERT) && existsSync(OVMF_VARS_SNAKEOIL) && readSigningCertificate(SNAKEOIL_CERT).sha256 === cert.sha256) return withVars(OVMF_VARS_SNAKEOIL)
  // any other certificate: a copy of the plain store with it enrolled as PK, KEK and db
  if (existsSync(OVMF_VARS)) return {enroll: {certPem: cert.pem, base: OVMF_VARS, baseSha256: await sha256File(OVMF_VARS)}}
  return {notRun: `no OVMF variable store that enrolls ${cert.subject} was given (build --secure-boot-vars), and there is no ${OVMF_VARS} to enroll it into (package ovmf)`}
}

/** The validate stage's hosts: --host (one or several), or a hosts file's hosts with their keys. */
function hostInputs(o: Pick<BuildContext['options'], 'validateHost' | 'validateHostsFile'>): Pick<ValidateInputs, 'host' | 'hostKeys'> {
  const file = o.validateHostsFile
  const hosts = [...new Set(file ? file.hosts.map((h) => h.address) : (o.validateHost ?? []))].sort()
  return {
    host: hosts.length === 0 ? null : hosts.length === 1 ? hosts[0] : hosts,
    ...(file ? {hostKeys: Object.fromEntries(file.hosts.map((h) => [h.address, h.hostKey]))} : {}),
  }
}

/**
 * validate: boots the exact disk assemble made (never modified) under QEMU + OVMF, locally or on
 * an AMD host, and keeps report.json, junit.xml and serial.log. A failed check fails the stage, so
 * a failed validation is never cached as if it passed.
 */
export const validateStage: StageOf<'validate', ValidateInputs, 'assemble' | 'compile'> = {
  name: 'validate',
  title: 'validate',
  code: import.meta.url,
  needs: ['assemble', 'compile'],
  async inputs(ctx): Promise<ValidateInputs> {
    const v = ctx.recipe.recipe.validate
    return {
      modes: modesOf(ctx),
      memoryMiB: v.memory_mib,
      cpus: v.cpus,
      bootTimeoutS: v.boot_timeout_s,
      hostname: ctx.recipe.recipe.image.hostname,
      line: ctx.recipe.recipe.kernel.line,
      ...hostInputs(ctx.options),
      skip: ctx.options.skipValidation ?? false,
      // a control build keeps its failed validation: showing the failure is its purpose
      control: ctx.options.control ?? false,
      seedTemplates: await seedTemplatesDigest(ctx.dirs.templates),
      probe: sha256(await readFile(PROBE_SOURCE)),
      secureBoot: await secureBootValidation(ctx.options),
    }
  },
  async run(io, inputs) {
    const {dirs, cacheDir, validateHostKey, validateIdentity, validateIdentityPassphraseFile, validateHostWaitMs} = io.env
    const {assemble, compile} = io.upstream
    const disk = join(assemble.dir, 'disk.raw')
    const {modes} = inputs
    if (inputs.skip) {
      const r = await writeSkippedReport(io.out, modes, 'validation skipped by --no-validate', disk)
      return {verdict: r.verdict, modes, checks: r.checks.map(({mode, name, verdict, evidence}) => ({mode, name, verdict, evidence}))}
    }
    const am = assemble.meta
    const cm = compile.meta
    const sb = inputs.secureBoot
    if (sb && 'vars' in sb && (await sha256File(sb.vars)) !== sb.varsSha256) {
      throw new StageError(`the Secure Boot variable store ${sb.vars} changed after this validation was keyed (sha256 ${sb.varsSha256})`, {hint: 'run the build again'})
    }
    let secureBootVars = sb && 'vars' in sb ? sb.vars : undefined
    let storeRecord: ValidateResult['secureBootVars'] = sb && 'vars' in sb ? {path: sb.vars, sha256: sb.varsSha256} : undefined
    if (sb && 'enroll' in sb) {
      const base = await readFile(sb.enroll.base)
      if (sha256(base) !== sb.enroll.baseSha256) throw new StageError(`the variable store ${sb.enroll.base} changed after this validation was keyed (sha256 ${sb.enroll.baseSha256})`, {hint: 'run the build again'})
      // kept beside the report: the store the Secure Boot boot started from
      secureBootVars = await writeEnrolledStore(io.out, base, sb.enroll.certPem, sb.enroll.base)
      // by its name in the stage's output: the cache entry is the place publish reads it from
      storeRecord = {file: ENROLLED_STORE, sha256: await sha256File(secureBootVars)}
    }
    // the host key pin (--host-key, parsed in cli/build-context.ts); auth: --identity, else the ssh-agent
    const hostKeys = inputs.hostKeys
    const target = hostKeys
      ? {hosts: Object.entries(hostKeys).map(([address, hostKey]) => ({address, hostKey}))}
      : {host: inputs.host ?? undefined, ...validateHostKey}
    const report = await validateOnHost({...target, identity: validateIdentity, identityPassphraseFile: validateIdentityPassphraseFile, hostWaitMs: validateHostWaitMs, signal: io.signal}, {
      disk,
      modes,
      templatesDir: dirs.templates,
      outDir: io.out,
      expected: {release: cm.release, version: cm.version, marker: await markerLine(dirs.kernels, cm.patches, inputs.line), diskSha256: am.diskSha256, ukiSha256: am.ukiSha256},
      memoryMiB: inputs.memoryMiB,
      cpus: inputs.cpus,
      bootTimeoutS: inputs.bootTimeoutS,
      hostname: inputs.hostname,
      // the disk boot proves what publish ships (the firmware's own boot, the vTPM's PCRs); a control
      // build is never published and shows only what its kernel lacks, which the UKI boot's checks read
      diskBoot: !inputs.control,
      // nor does it need the kexec round trip (a full second boot under TCG): its proof is nvme-integrity's failure
      ...(inputs.control ? {notRun: {kexec: 'a --control build is never published: its validation shows what the unpatched kernel lacks (nvme-integrity)'}} : {}),
      secureBootVars,
      secureBootNotRun: sb && 'notRun' in sb ? sb.notRun : undefined,
      probeCacheDir: cacheDir,
      sha256MemoDir: sha256MemoDir(cacheDir),
      log: io.log,
      progress: io.progress,
    })
    const checks = report.checks.map(({mode, name, verdict, evidence}) => ({mode, name, verdict, evidence}))
    if (report.verdict === 'failed' && !inputs.control) {
      // the runner keeps a failed stage's out dir under <cache>/failed/validate: report, JUnit and serial log stay readable
      const failed = checks.filter((c) => c.verdict === 'fail')
      throw new StageError(`validation failed: ${failed.map((c) => `${c.mode}/${c.name}`).join(', ')}`, {
        details: failed.map((c) => `  ${c.mode}/${c.name}: ${c.evidence}`),
        hint: `report.json, junit.xml and serial.log are kept with the failed stage (<cache>/failed/validate); run \`cvm-image validate ${disk}\` to repeat it`,
      })
    }
    // when and where it ran are facts about this validation, kept with its cached result (not inputs)
    return {verdict: report.verdict, modes, checks, when: new Date().toISOString(), hostKind: inputs.host ? 'remote' : 'local', boots: report.modes.map((m) => ({boot: m.boot, host: m.host ?? report.host})), bootToSshMs: report.timings.bootToSshMs ?? null, totalMs: report.timings.totalMs, ...(storeRecord ? {secureBootVars: storeRecord} : {})}
  },
}
