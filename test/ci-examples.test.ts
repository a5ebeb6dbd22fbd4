import {generateKeyPairSync} from 'node:crypto'
import {execFile} from 'node:child_process'
import {chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {parse} from 'yaml'

import {BaseCommand} from '../src/cli/base-command.js'
import Build from '../src/commands/build.js'
import Plan, {type PlanResult} from '../src/commands/plan.js'
import Recipes from '../src/commands/recipes/index.js'
import {StageCache} from '../src/pipeline/cache.js'
import {loadCacheSigner} from '../src/pipeline/cache-signature.js'
import {OPTIONS, type OptionRow} from '../src/pipeline/options.js'
import {RemoteStageCache} from '../src/pipeline/remote-cache.js'
import {OciClient} from '../src/remote/oci/client.js'
import {parseOciReference} from '../src/remote/oci/reference.js'
import {repoRoot} from './helpers/paths.js'
import {startRegistry, type TestRegistry} from './helpers/registry.js'

const execFileAsync = promisify(execFile)

/**
 * The CI examples of docs/ci.md (docs/ci/*.yml) run here as a runner would run them: each shell step
 * through bash, against docker-registry on 127.0.0.1 (htpasswd, TLS). `./cvm-image` is a shim that
 * records its arguments and runs the built CLI, a build as `plan` with the same stage options (no
 * kernel is compiled here): so the credentials the step writes, the key, the trust list and the
 * oci:// reference are all used for real, and plan says which stages the registry gives.
 */

const DOCS = join(repoRoot, 'docs', 'ci')
const read = (f: string) => parse(readFileSync(join(DOCS, f), 'utf8')) as Record<string, any>
type Row = {id: string; buildable: boolean; needs: unknown[]}

/** the flags a command takes: its own, the base flags and --json */
const flagsOf = (cmd: {flags?: Record<string, unknown>}) => new Set([...Object.keys(cmd.flags ?? {}), ...Object.keys(BaseCommand.baseFlags), 'json'])
const COMMANDS: Record<string, Set<string>> = {build: flagsOf(Build), plan: flagsOf(Plan), recipes: flagsOf(Recipes)}

/** build's options that plan does not take, and whether each takes a value: the shim leaves them out */
const BUILD_ONLY = Object.fromEntries([...COMMANDS.build].filter((f) => !COMMANDS.plan.has(f)).map((f) => [f, f in OPTIONS && (OPTIONS[f as keyof typeof OPTIONS] as OptionRow).kind !== 'boolean']))

const SHIM = `#!${process.execPath}
const {appendFileSync} = require('node:fs')
const {spawnSync} = require('node:child_process')
let argv = process.argv.slice(2)
appendFileSync(process.env.CVM_SHIM_LOG, JSON.stringify(argv) + '\\n')
if (argv[0] === 'build') {
  const drop = JSON.parse(process.env.CVM_SHIM_DROP)
  const kept = ['plan']
  for (let i = 1; i < argv.length; i++) {
    const name = argv[i].startsWith('--') ? argv[i].slice(2).split('=')[0] : undefined
    if (name !== undefined && name in drop) { if (drop[name] && !argv[i].includes('=')) i++; continue }
    kept.push(argv[i])
  }
  argv = kept
}
const r = spawnSync(process.execPath, [${JSON.stringify(join(repoRoot, 'bin', 'run.js'))}, ...argv], {stdio: 'inherit'})
process.exit(r.status ?? 1)
`

/** Every shell script of a GitHub workflow's steps or a GitLab file's jobs, with where it is. */
function scripts(doc: Record<string, any>): {where: string; script: string}[] {
  const out: {where: string; script: string}[] = []
  for (const [name, job] of Object.entries(doc.jobs ?? doc)) {
    if (!job || typeof job !== 'object') continue
    for (const [i, step] of ((job as any).steps ?? []).entries()) if (step.run) out.push({where: `${name}.steps[${i}]`, script: step.run})
    for (const k of ['before_script', 'script']) if ((job as any)[k]) out.push({where: `${name}.${k}`, script: [].concat((job as any)[k]).join('\n')})
  }
  return out
}

describe('docs/ci examples: the same commands, run here against a local registry', () => {
  let reg: TestRegistry
  let dir: string
  let teamKey: string
  let teamPem: string
  const github = read('github-actions.yml')
  const gitlab = read('gitlab-ci.yml')
  const gitlabBuild = read('gitlab-build.yml')
  const gitlabImage = () => `${reg.host}/team/cvm-image`

  beforeAll(async () => {
    reg = await startRegistry()
    dir = mkdtempSync(join(tmpdir(), 'cvm-ci-examples-'))
    const pair = generateKeyPairSync('ed25519')
    teamPem = pair.privateKey.export({type: 'pkcs8', format: 'pem'}).toString()
    teamKey = join(dir, 'team-key.pem')
    writeFileSync(teamKey, teamPem, {mode: 0o600})
    writeFileSync(join(dir, 'team.pub'), pair.publicKey.export({type: 'spki', format: 'pem'}))

    // another runner built debian-12's base and pushed it, signed with the team key, to both examples' repositories
    const planned = (await Plan.run(['debian-12', '--root', repoRoot, '--cache-dir', join(dir, 'no-cache'), '--json'], repoRoot)) as PlanResult
    const baseKey = planned.stages[0].key
    const other = new StageCache(join(dir, 'runner-a'))
    const temp = await other.makeTemp('base', baseKey)
    writeFileSync(join(temp, 'rootfs.tar'), 'not really a rootfs')
    await other.commit('base', baseKey, temp, {})
    for (const repo of [`${reg.host}/${github.env.CACHE_REPO}`, `${gitlabImage()}/cvm-stages`]) {
      const client = new OciClient(parseOciReference(`oci://${repo}`, '--cache-to'), {caFile: reg.caFile, credentials: {user: reg.user, password: reg.password, source: 'test'}})
      await new RemoteStageCache(client, {signer: loadCacheSigner(teamKey), trusted: []}).push(other, 'base', baseKey)
    }
  }, 90_000)
  afterAll(async () => {
    await reg?.stop()
    if (dir) rmSync(dir, {recursive: true, force: true})
  })

  /** A runner's work tree: the shim as ./cvm-image, ci/cache-trust.pub holding the given public key. */
  function workTree(trustPub: string): {work: string; log: string; env: Record<string, string>} {
    const work = mkdtempSync(join(dir, 'work-'))
    writeFileSync(join(work, 'cvm-image'), SHIM)
    chmodSync(join(work, 'cvm-image'), 0o755)
    mkdirSync(join(work, 'ci'))
    writeFileSync(join(work, 'ci', 'cache-trust.pub'), trustPub)
    mkdirSync(join(work, 'tmp'))
    const log = join(work, 'argv.log')
    // the runner's environment, without what this machine's own might give cvm-image
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(CVM_IMAGE_|REGISTRY_AUTH_FILE$|DOCKER_CONFIG$)/.test(k))) as Record<string, string>
    Object.assign(env, {
      TMPDIR: join(work, 'tmp'),
      CVM_SHIM_LOG: log,
      CVM_SHIM_DROP: JSON.stringify(BUILD_ONLY),
      CVM_IMAGE_CACHE: join(work, 'cache'),
      // the examples name a registry with a public CA; this one's CA is given as a runner would give a private one
      CVM_IMAGE_CACHE_CA: reg.caFile,
    })
    return {work, log, env}
  }

  /** A step's script under GitHub's and GitLab's bash (errexit, pipefail), in exactly this environment; asynchronous, so the file's event loop keeps running (docs/testing.md "Stalls") */
  async function bash(script: string, cwd: string, env: Record<string, string>, where: string): Promise<{stdout: string; stderr: string}> {
    const r = await execFileAsync('bash', ['--noprofile', '--norc', '-eo', 'pipefail', '-c', script], {cwd, env, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 ** 2}).then(
      (ok) => ({status: 0, stdout: ok.stdout, stderr: ok.stderr}),
      (e: {code?: number | string; stdout?: string; stderr?: string}) => ({status: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? ''}),
    )
    expect(r.status, `${where} exited ${r.status}:\n${r.stderr}`).toBe(0)
    return r
  }
  const argvs = (log: string) => readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as string[])
  const buildable = (rows: Row[]) => rows.filter((r) => r.buildable && r.needs.length === 0).map((r) => r.id).sort()

  /** GitHub's ${{ }} expressions the examples use, and what they are here; any other is refused */
  function expand(value: string, exprs: Record<string, string>): string {
    return value.replace(/\$\{\{\s*(.*?)\s*\}\}/g, (_, e: string) => {
      if (!(e in exprs)) throw new Error(`docs/ci/github-actions.yml uses \${{ ${e} }}, which this test does not know: add it to the test's expressions`)
      return exprs[e]
    })
  }
  const expandAll = (o: Record<string, string> | undefined, exprs: Record<string, string>) => Object.fromEntries(Object.entries(o ?? {}).map(([k, v]) => [k, expand(String(v), exprs)]))

  it('names only flags of the commands it runs, each a row of the options table, and only CVM_IMAGE_ variables an option reads', () => {
    const texts = ['github-actions.yml', 'gitlab-ci.yml', 'gitlab-build.yml'].map((f) => readFileSync(join(DOCS, f), 'utf8'))
    const all = [github, gitlab, gitlabBuild].flatMap(scripts)
    expect(all.length).toBeGreaterThan(3)
    // every long option in a script is cvm-image's (jq, base64, install take short ones only)
    for (const {where, script} of all) {
      for (const [flag] of script.matchAll(/(?<![\w-])--[a-z][a-z0-9-]*/g)) {
        const name = flag.slice(2)
        expect(COMMANDS.build.has(name) || COMMANDS.recipes.has(name), `${where}: ${flag} is no option of cvm-image build or recipes`).toBe(true)
        expect(name in OPTIONS || name === 'json', `${where}: ${flag} is no row of src/pipeline/options.ts`).toBe(true)
      }
    }
    const envs = new Set([...Object.values(OPTIONS).map((r) => (r as OptionRow).env), BaseCommand.baseFlags.root.env, 'CVM_IMAGE_CONFIG'])
    for (const t of texts) for (const [v] of t.matchAll(/CVM_IMAGE_[A-Z_]+/g)) expect(envs.has(v), `${v} is read by no option`).toBe(true)
    // what the examples are there to show
    for (const s of ['--cache-to', '--cache-from', '--cache-key', '--cache-trust', 'CVM_IMAGE_CCACHE_REMOTE', 'DOCKER_CONFIG', 'recipes --json']) {
      expect(texts[0], `github-actions.yml shows ${s}`).toContain(s)
      expect(texts[1] + texts[2], `gitlab-ci.yml shows ${s}`).toContain(s)
    }
  })

  it('GitHub Actions: the matrix from recipes --json; a push build and a fork pull request build against the registry', async () => {
    const exprs = {'secrets.CVM_CCACHE_REDIS': 'redis://s3cret-redis@127.0.0.1:6379', 'github.actor': reg.user, 'secrets.GITHUB_TOKEN': reg.password, 'matrix.recipe': 'debian-12', 'steps.list.outputs.recipes': '', 'secrets.CVM_CACHE_KEY': teamPem}
    const workflowEnv = {...expandAll(github.env, exprs), REGISTRY: reg.host}

    // the recipes job: its output is the matrix
    {
      const {work, log, env} = workTree('')
      const output = join(work, 'github-output')
      writeFileSync(output, '')
      const step = github.jobs.recipes.steps.find((s: any) => s.id === 'list')
      await bash(step.run, work, {...env, ...workflowEnv, GITHUB_OUTPUT: output}, 'recipes.list')
      const matrix = JSON.parse(/^recipes=(.*)$/m.exec(readFileSync(output, 'utf8'))![1]) as string[]
      const rows = JSON.parse(readFileSync(join(work, 'recipes.json'), 'utf8')) as Row[]
      expect(matrix.sort()).toEqual(buildable(rows))
      expect(matrix).toContain('debian-12')
      expect(matrix).not.toContain('backport-5.4') // needs --kernel-source-file
      expect(matrix).not.toContain('ubuntu-20.04') // needs source access
      expect(argvs(log)).toEqual([['recipes', '--json']])
    }

    const job = github.jobs.build
    const runBuildJob = async (secretKey: string, trustPub: string) => {
      const {work, log, env: base} = workTree(trustPub)
      const runnerTemp = join(work, 'runner-temp')
      mkdirSync(runnerTemp)
      const githubEnv = join(work, 'github-env')
      writeFileSync(githubEnv, '')
      let env = {...base, ...workflowEnv, ...expandAll(job.env, exprs), RUNNER_TEMP: runnerTemp, GITHUB_ENV: githubEnv}
      const out: string[] = []
      for (const [i, step] of job.steps.entries()) {
        if (!step.run) continue
        const stepEnv = expandAll(step.env, {...exprs, 'secrets.CVM_CACHE_KEY': secretKey})
        const r = await bash(step.run, work, {...env, ...stepEnv}, `build.steps[${i}]`)
        out.push(r.stdout, r.stderr)
        // what a step appends to $GITHUB_ENV is the next steps' environment
        env = {...env, ...Object.fromEntries(readFileSync(githubEnv, 'utf8').trim().split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))}
      }
      const plan = JSON.parse(readFileSync(join(work, 'build.json'), 'utf8')) as PlanResult
      // the registry's password and the signing key reach no output
      for (const text of [...out, JSON.stringify(plan)]) for (const secret of [reg.password, 's3cret-redis', teamPem.split('\n')[1]]) expect(text).not.toContain(secret)
      expect(statSync(join(runnerTemp, 'docker', 'config.json')).mode & 0o077).toBe(0)
      return {argv: argvs(log), plan, runnerTemp}
    }
    const repo = `oci://${reg.host}/${github.env.CACHE_REPO}`
    const teamPub = readFileSync(join(dir, 'team.pub'), 'utf8')

    // a push to main: the key from the secret signs, --cache-to reads and pushes
    const push = await runBuildJob(teamPem, teamPub)
    expect(push.argv).toEqual([['build', 'debian-12', '--cache-to', repo, '--cache-key', join(push.runnerTemp, 'cache-key.pem'), '--cache-trust', 'ci/cache-trust.pub', '--publish', 'dir:out', '--json']])
    expect(statSync(join(push.runnerTemp, 'cache-key.pem')).mode & 0o077).toBe(0)
    expect(push.plan.stages.map((s) => [s.stage, s.source])).toEqual(push.plan.stages.map((s) => [s.stage, s.stage === 'base' ? 'remote' : 'runs']))
    expect(push.plan.stages[0].reason).toBe(`remote: in ${repo}, signed by a trusted key`)

    // a fork's pull request: no key, --cache-from, the team's key trusted through ci/cache-trust.pub
    const pr = await runBuildJob('', teamPub)
    expect(pr.argv).toEqual([['build', 'debian-12', '--cache-from', repo, '--cache-trust', 'ci/cache-trust.pub', '--publish', 'dir:out', '--json']])
    expect(pr.plan.stages[0].source).toBe('remote')

    // the same entry, with another key in ci/cache-trust.pub: not taken, every stage runs here
    const stranger = generateKeyPairSync('ed25519').publicKey.export({type: 'spki', format: 'pem'}).toString()
    const untrusted = await runBuildJob('', stranger)
    expect(untrusted.plan.stages.map((s) => s.source)).toEqual(untrusted.plan.stages.map(() => 'runs'))
  }, 120_000)

  it('GitLab CI: the child pipeline from recipes --json, and its build jobs with and without the protected key', async () => {
    const {work, log, env} = workTree('')
    await bash(gitlab.recipes.script.join('\n'), work, env, 'recipes.script')
    const rows = JSON.parse(readFileSync(join(work, 'recipes.json'), 'utf8')) as Row[]
    const child = parse(readFileSync(join(work, 'builds.yml'), 'utf8')) as Record<string, {extends: string; variables: {RECIPE: string}}>
    expect(Object.values(child).map((j) => j.variables.RECIPE).sort()).toEqual(buildable(rows))
    // every job extends the template that the trigger includes beside the artifact
    for (const job of Object.values(child)) expect(gitlabBuild[job.extends], job.extends).toBeDefined()
    expect(gitlab.build.trigger.include).toContainEqual({local: 'docs/ci/gitlab-build.yml'})
    expect(existsSync(join(repoRoot, 'docs/ci/gitlab-build.yml'))).toBe(true)
    expect(argvs(log)).toEqual([['recipes', '--json']])

    const teamPub = readFileSync(join(dir, 'team.pub'), 'utf8')
    const repo = `oci://${gitlabImage()}/cvm-stages`
    for (const protectedKey of [true, false]) {
      const job = child['build:debian-12']
      const w = workTree(teamPub)
      const vars: Record<string, string> = {
        ...w.env,
        ...job.variables,
        CI_REGISTRY: reg.host,
        CI_REGISTRY_IMAGE: gitlabImage(),
        CI_REGISTRY_USER: reg.user,
        CI_REGISTRY_PASSWORD: reg.password,
        CVM_IMAGE_CCACHE_REMOTE: 'redis://s3cret-redis@127.0.0.1:6379',
      }
      // a File variable: GitLab gives the path of a file holding it
      if (protectedKey) vars.CVM_CACHE_KEY = teamKey
      const r = await bash([].concat(gitlabBuild[job.extends].script).join('\n'), w.work, vars, `${job.extends}.script`)
      const [argv] = argvs(w.log)
      expect(argv.slice(0, 3)).toEqual(['build', 'debian-12', protectedKey ? '--cache-to' : '--cache-from'])
      expect(argv[3]).toBe(repo)
      expect(argv.includes('--cache-key')).toBe(protectedKey)
      const plan = JSON.parse(readFileSync(join(w.work, 'build.json'), 'utf8')) as PlanResult
      expect(plan.stages.map((s) => [s.stage, s.source])).toEqual(plan.stages.map((s) => [s.stage, s.stage === 'base' ? 'remote' : 'runs']))
      for (const secret of [reg.password, 's3cret-redis']) expect(r.stdout + r.stderr + JSON.stringify(plan)).not.toContain(secret)
    }
  }, 120_000)
})
