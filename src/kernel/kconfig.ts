import {existsSync, readFileSync} from 'node:fs'
import {dirname, join} from 'node:path'

import {valueOf, type DotConfig} from './dotconfig.js'

/**
 * Just enough of the Kconfig language to answer "why did olddefconfig drop this option?":
 * each symbol's `depends on`, including those of the `if` blocks and menus around it, whether
 * it has a prompt, and who selects it.
 */
export interface SymbolDefinition {
  file: string
  line: number
  /** every dependency expression and where it is written: the entry's own and its enclosing if/menu/choice blocks */
  depends: Dependency[]
  /** false when no prompt exists: only select or a default sets the symbol */
  hasPrompt: boolean
}

export interface Dependency {
  expr: string
  /** file:line */
  at: string
}

export interface KconfigDb {
  definitions: Map<string, SymbolDefinition[]>
  /** symbol -> "A if EXPR" of every `select symbol` */
  selectedBy: Map<string, string[]>
}

/** Reads the Kconfig tree from the top-level Kconfig for an architecture (x86 by default). */
export function readKconfig(tree: string, srcarch = 'x86'): KconfigDb {
  const db: KconfigDb = {definitions: new Map(), selectedBy: new Map()}
  parseFile(db, tree, 'Kconfig', [], srcarch, new Set())
  return db
}

function parseFile(db: KconfigDb, tree: string, rel: string, outer: Dependency[], srcarch: string, seen: Set<string>): void {
  const path = join(tree, rel)
  if (seen.has(path) || !existsSync(path)) return
  seen.add(path)
  const lines = joinContinuations(readFileSync(path, 'utf8').split('\n'))
  // the dependency stack of enclosing if/menu/choice blocks (a menu's own "depends on" is added to its frame)
  const stack: Array<{kind: 'if' | 'menu' | 'choice'; deps: Dependency[]}> = []
  let entry: {sym: string; def: SymbolDefinition} | undefined
  let inHelp = false
  let helpIndent = -1
  let frameOpen: {deps: Dependency[]} | undefined
  const enclosing = () => [...outer, ...stack.flatMap((s) => s.deps)]

  for (const [i, raw] of lines.entries()) {
    const text = raw.replace(/\s+#.*$/, '')
    const line = text.trim()
    if (inHelp) {
      const indent = raw.match(/^\s*/)![0].replace(/\t/g, '        ').length
      if (line === '' || (helpIndent < 0 && indent > 0) || (helpIndent >= 0 && indent >= helpIndent)) {
        if (helpIndent < 0 && line !== '') helpIndent = indent
        continue
      }
      inHelp = false
    }
    if (line === '' || line.startsWith('#')) continue
    const [kw, ...rest] = line.split(/\s+/)
    const arg = rest.join(' ')
    switch (kw) {
      case 'config':
      case 'menuconfig': {
        frameOpen = undefined
        const def: SymbolDefinition = {file: rel, line: i + 1, depends: enclosing(), hasPrompt: false}
        entry = {sym: arg, def}
        const list = db.definitions.get(arg) ?? []
        list.push(def)
        db.definitions.set(arg, list)
        break
      }
      case 'if':
        entry = undefined
        frameOpen = undefined
        stack.push({kind: 'if', deps: [{expr: arg, at: `${rel}:${i + 1}`}]})
        break
      case 'menu':
      case 'choice': {
        entry = undefined
        const frame = {kind: kw, deps: [] as Dependency[]}
        stack.push(frame)
        frameOpen = frame
        break
      }
      case 'endif':
      case 'endmenu':
      case 'endchoice':
        entry = undefined
        frameOpen = undefined
        stack.pop()
        break
      case 'source':
      case 'rsource':
      case 'osource':
      case 'orsource': {
        entry = undefined
        frameOpen = undefined
        const target = arg.replace(/^"|"$/g, '').replace(/\$\(SRCARCH\)|\$SRCARCH/g, srcarch)
        const next = kw.startsWith('r') || kw === 'orsource' ? join(dirname(rel), target) : target
        parseFile(db, tree, next, enclosing(), srcarch, seen)
        break
      }
      case 'depends':
        if (rest[0] === 'on') {
          const dep = {expr: rest.slice(1).join(' '), at: `${rel}:${i + 1}`}
          if (entry) entry.def.depends.push(dep)
          else if (frameOpen) frameOpen.deps.push(dep)
        }
        break
      case 'bool':
      case 'tristate':
      case 'string':
      case 'int':
      case 'hex':
      case 'prompt':
        if (entry && arg.startsWith('"')) entry.def.hasPrompt = true
        break
      case 'def_bool':
      case 'def_tristate':
        break
      case 'select':
        if (entry) {
          const m = /^(\S+)(?:\s+if\s+(.+))?$/.exec(arg)
          if (m) {
            const list = db.selectedBy.get(m[1]) ?? []
            list.push(m[2] ? `${entry.sym} if ${m[2]}` : entry.sym)
            db.selectedBy.set(m[1], list)
          }
        }
        break
      case 'help':
      case '---help---':
        inHelp = true
        helpIndent = -1
        break
      default:
        if (kw === 'mainmenu' || kw === 'comment') {
          entry = undefined
        }
    }
  }
}

function joinContinuations(lines: string[]): string[] {
  const out: string[] = []
  let acc = ''
  for (const l of lines) {
    if (l.endsWith('\\')) {
      acc += l.slice(0, -1) + ' '
      out.push('')
      continue
    }
    out.push(acc + l)
    acc = ''
  }
  return out
}

// ---- expressions --------------------------------------------------------------------------------

type Token = {t: 'sym'; v: string} | {t: 'op'; v: string}

function tokenize(expr: string): Token[] {
  const out: Token[] = []
  // $(...) macros (e.g. $(cc-option,...)) are evaluated by Kconfig at build time: taken as met here
  const s = expr.replace(/\$\([^()]*(\([^()]*\)[^()]*)*\)/g, 'y')
  const re = /\s*(&&|\|\||!=|<=|>=|[!()=<>]|"[^"]*"|[A-Za-z0-9_.-]+)/y
  let m
  while ((m = re.exec(s))) {
    const v = m[1]
    out.push(/^(&&|\|\||!=|<=|>=|[!()=<>])$/.test(v) ? {t: 'op', v} : {t: 'sym', v})
  }
  return out
}

type Node = {k: 'sym'; v: string} | {k: 'not'; a: Node} | {k: 'and' | 'or'; a: Node; b: Node} | {k: 'cmp'; op: string; a: string; b: string}

function parseExpr(tokens: Token[]): Node {
  let i = 0
  const peek = () => tokens[i]
  const orExpr = (): Node => {
    let a = andExpr()
    while (peek()?.v === '||' && peek()?.t === 'op') {
      i++
      a = {k: 'or', a, b: andExpr()}
    }
    return a
  }
  const andExpr = (): Node => {
    let a = unary()
    while (peek()?.v === '&&' && peek()?.t === 'op') {
      i++
      a = {k: 'and', a, b: unary()}
    }
    return a
  }
  const unary = (): Node => {
    const tk = peek()
    if (!tk) return {k: 'sym', v: 'y'}
    if (tk.t === 'op' && tk.v === '!') {
      i++
      return {k: 'not', a: unary()}
    }
    if (tk.t === 'op' && tk.v === '(') {
      i++
      const e = orExpr()
      if (peek()?.v === ')') i++
      return e
    }
    i++
    const next = peek()
    if (next?.t === 'op' && ['=', '!=', '<', '>', '<=', '>='].includes(next.v)) {
      i++
      const b = tokens[i++]
      return {k: 'cmp', op: next.v, a: tk.v, b: b?.v ?? ''}
    }
    return {k: 'sym', v: tk.v}
  }
  return orExpr()
}

const TRI: Record<string, number> = {n: 0, m: 1, y: 2}

function symValue(config: DotConfig, sym: string): string {
  if (sym === 'y' || sym === 'm' || sym === 'n') return sym
  if (/^".*"$/.test(sym)) return sym.slice(1, -1)
  if (/^-?\d+$|^0x[0-9a-f]+$/i.test(sym)) return sym
  return valueOf(config, `CONFIG_${sym}`)
}

function evalNode(n: Node, config: DotConfig): number {
  switch (n.k) {
    case 'sym':
      return TRI[symValue(config, n.v)] ?? 0
    case 'not':
      return 2 - evalNode(n.a, config)
    case 'and':
      return Math.min(evalNode(n.a, config), evalNode(n.b, config))
    case 'or':
      return Math.max(evalNode(n.a, config), evalNode(n.b, config))
    case 'cmp': {
      const [a, b] = [symValue(config, n.a), symValue(config, n.b)]
      const [na, nb] = [Number(a), Number(b)]
      const numeric = !Number.isNaN(na) && !Number.isNaN(nb)
      const r = {'=': a === b, '!=': a !== b, '<': numeric && na < nb, '>': numeric && na > nb, '<=': numeric && na <= nb, '>=': numeric && na >= nb}[n.op]
      return r ? 2 : 0
    }
  }
}

/**
 * The symbols that keep an expression below `need` (2 for y, 1 for m): plain symbols too low,
 * negated ones too high. A dependency at m limits a tristate to m: that is why y was refused.
 */
function culprits(n: Node, config: DotConfig, need: number, negated = false): string[] {
  const v = evalNode(n, config)
  if (!negated && v >= need) return []
  if (negated && 2 - v >= need) return []
  switch (n.k) {
    case 'sym':
      return /^[A-Z0-9_]+$/.test(n.v) && !['y', 'm', 'n'].includes(n.v) ? [`${negated ? '!' : ''}${n.v}`] : []
    case 'not':
      return culprits(n.a, config, need, !negated)
    case 'and':
    case 'or':
      return [...culprits(n.a, config, need, negated), ...culprits(n.b, config, need, negated)]
    case 'cmp':
      return [`${n.a}${n.op}${n.b}`]
  }
}

/** "CONFIG_CRYPTO=n" for a symbol, "!X86_32 (CONFIG_X86_32=y)" for a negated one, "CRYPTO=y (CONFIG_CRYPTO=n)" for a comparison. */
function describeCulprit(c: string, config: DotConfig): string {
  const cmp = /^([A-Z0-9_]+)(!=|<=|>=|[=<>])/.exec(c)
  if (cmp) return `${c} (CONFIG_${cmp[1]}=${valueOf(config, `CONFIG_${cmp[1]}`)})`
  const name = c.replace(/^!/, '')
  if (!/^[A-Z0-9_]+$/.test(name)) return c
  const value = `CONFIG_${name}=${valueOf(config, `CONFIG_${name}`)}`
  return c.startsWith('!') ? `!${name} (${value})` : value
}

export function evaluate(expr: string, config: DotConfig): number {
  return evalNode(parseExpr(tokenize(expr)), config)
}

export interface UnmetDependency {
  /** the dependency expression that is false */
  expr: string
  /** where it is written */
  at: string
  /** the symbols that make it false, with their values: "CRYPTO=n", "!X86_32 (X86_32=y)" */
  off: string[]
}

export interface DropExplanation {
  option: string
  /** no definition in this tree's Kconfig */
  unknown: boolean
  unmet: UnmetDependency[]
  hasPrompt: boolean
  selectedBy: string[]
}

/** Why `option` (CONFIG_X) does not have the value asked for, in this tree's Kconfig and this config. */
export function explainDrop(db: KconfigDb, option: string, config: DotConfig, want: readonly string[] = ['y', 'm']): DropExplanation {
  const sym = option.replace(/^CONFIG_/, '')
  const defs = db.definitions.get(sym) ?? []
  const unmet: UnmetDependency[] = []
  // y needs every dependency at y; m (or a non-tristate value) needs them above n
  const need = want.includes('m') || !want.includes('y') ? 1 : 2
  for (const d of defs) {
    for (const {expr, at} of d.depends) {
      if (evaluate(expr, config) >= need) continue
      const off = culprits(parseExpr(tokenize(expr)), config, need).map((c) => describeCulprit(c, config))
      unmet.push({expr, at, off})
    }
  }
  return {option, unknown: defs.length === 0, unmet, hasPrompt: defs.some((d) => d.hasPrompt), selectedBy: db.selectedBy.get(sym) ?? []}
}

/** One line for people: "CONFIG_KEXEC_FILE depends on X86_64 && CRYPTO && CRYPTO_SHA256 (arch/x86/Kconfig:2030): CONFIG_CRYPTO=n". */
export function renderDrop(e: DropExplanation): string {
  if (e.unknown) return `${e.option} does not exist in this tree's Kconfig (renamed, removed, or newer than this kernel)`
  if (e.unmet.length) return e.unmet.map((u) => `${e.option} depends on "${u.expr}" (${u.at}), which is not met: ${u.off.join(', ') || 'unknown'}`).join('; ')
  if (!e.hasPrompt) return `${e.option} has no prompt: only a select sets it${e.selectedBy.length ? ` (selected by ${e.selectedBy.slice(0, 6).join(', ')})` : ''}`
  return `${e.option}: its dependencies are met; another option or a choice overrides it`
}
