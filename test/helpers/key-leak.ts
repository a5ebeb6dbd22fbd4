import {createPrivateKey} from 'node:crypto'
import {writeFile} from 'node:fs/promises'

import {run} from '../../src/util/exec.js'

/** the longest runs of `bin` without a newline (grep matches within a line), cut to at most 64 bytes, none shorter than `min` */
export function rawNeedles(bin: Buffer, min = 16): Buffer[] {
  const out: Buffer[] = []
  let start = 0
  for (let i = 0; i <= bin.length; i++) {
    if (i < bin.length && bin[i] !== 0x0a) continue
    for (let s = start; i - s >= min; s += 64) out.push(bin.subarray(s, Math.min(i, s + 64)))
    start = i + 1
  }
  return out
}

/** The body of an ASCII-armoured block (OpenPGP or PEM), decoded: the key's raw bytes. */
export function dearmor(text: string): Buffer {
  const body = text.split('\n').filter((l) => /^[A-Za-z0-9+/]+={0,2}$/.test(l.trim()) && !l.startsWith('='))
  return Buffer.from(body.join(''), 'base64')
}

/**
 * What a leaked key would look like in a file: its armoured lines, and its raw secret bytes, which a
 * copy made by a tool (gpg's binary form, a DER key) holds instead. A PEM private key's secret is its
 * private scalar (JWK d, p, q); an OpenPGP key's is its binary less any run its public key also holds.
 */
export function keyNeedles(keyText: string, publicBinary?: Buffer): Buffer[] {
  const armoured = keyText.split('\n').filter((l) => /^[A-Za-z0-9+/=]{40,}$/.test(l)).map((l) => Buffer.from(l))
  let raw: Buffer[]
  if (keyText.includes('PRIVATE KEY-----')) {
    const jwk = createPrivateKey(keyText).export({format: 'jwk'}) as Record<string, string | undefined>
    raw = ['d', 'p', 'q'].flatMap((k) => (jwk[k] ? rawNeedles(Buffer.from(jwk[k]!, 'base64url')) : []))
  } else {
    raw = rawNeedles(dearmor(keyText)).filter((n) => !publicBinary?.includes(n))
  }
  return [...armoured, ...raw]
}

/** The files under `roots` that hold any needle (grep -F, byte-wise, binary files too). */
export async function filesHolding(roots: string[], needles: Buffer[], patternsFile: string): Promise<string[]> {
  await writeFile(patternsFile, Buffer.concat(needles.flatMap((n) => [n, Buffer.from('\n')])), {mode: 0o600})
  const r = await run('grep', ['-r', '-l', '-a', '-F', '-f', patternsFile, ...roots], {reject: false, env: {...process.env, LC_ALL: 'C'}})
  if (r.exitCode > 1) throw new Error(`grep failed: ${r.stderr}`)
  return r.stdout.split('\n').filter(Boolean)
}
