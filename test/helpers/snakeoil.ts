import {run} from '../../src/util/exec.js'

export {SNAKEOIL_CERT} from '../../src/validate/host-probe.js'

/** Debian's snakeoil signing key (package ovmf), the pair of SNAKEOIL_CERT: encrypted with the password "snakeoil" */
export const SNAKEOIL_KEY = '/usr/share/ovmf/PkKek-1-snakeoil.key'

/** Writes a decrypted copy of SNAKEOIL_KEY to `dest` (openssl writes it mode 0600, as signers demand); returns dest. */
export async function decryptedSnakeoilKey(dest: string): Promise<string> {
  await run('openssl', ['pkey', '-in', SNAKEOIL_KEY, '-passin', 'pass:snakeoil', '-out', dest], {what: 'decrypt the snakeoil key (openssl)'})
  return dest
}
