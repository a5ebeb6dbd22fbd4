import type {SshSession} from '../remote/ssh.js'

/**
 * The lock that gives a validation host to one boot at a time (docs/host-pool.md "The host lock").
 *
 * It is a directory, cvm-image-host.lock in the login's $TMPDIR (else /tmp), taken with mkdir (atomic)
 * by a keeper: a shell on the host that writes its owner line (pid, boot id, start time, who), prints
 * `locked`, then waits for EOF on its stdin, which is our SSH channel. Releasing closes the channel's
 * stdin; so does this run exiting, being killed, or its connection dropping (sshd closes the session).
 * The keeper then removes the lock, if it is still its own.
 *
 * A lock is stale when its keeper is gone (the host rebooted, the keeper was killed): the owner line
 * names another boot of the host (/proc/sys/kernel/random/boot_id), or no process with that pid and
 * start time runs. A lock directory without an owner line (its taker died between mkdir and writing
 * it) is stale after a minute. The next run that finds a stale lock removes it under a second
 * directory, cvm-image-host.lock.break, so two runs cannot both judge and remove (one of them removing
 * a fresh lock); a .break left by a run that died there is removed after a minute.
 */
const KEEPER = String.raw`
l="\${TMPDIR:-/tmp}/cvm-image-host.lock"
b=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
started() { cut -d' ' -f22 "/proc/$1/stat" 2>/dev/null; }
old() { [ -n "$(find "$1" -maxdepth 0 -mmin +1 2>/dev/null)" ]; }
stale() {
  [ -d "$l" ] || return 1
  if [ -f "$l/owner" ]; then
    read -r p ob st rest < "$l/owner" || return 1
    [ "$ob" != "$b" ] && return 0
    [ -n "$p" ] && [ "$(started "$p")" = "$st" ] && return 1
    return 0
  fi
  old "$l"
}
broke=
if ! mkdir "$l" 2>/dev/null; then
  if mkdir "$l.break" 2>/dev/null; then
    if stale; then broke=$(cut -d' ' -f4- "$l/owner" 2>/dev/null); rm -rf -- "$l"; broke="\${broke:-a taker that died before writing its owner line}"; fi
    rmdir "$l.break"
  elif old "$l.break"; then
    rmdir "$l.break" 2>/dev/null
  fi
  if ! mkdir "$l" 2>/dev/null; then
    echo "busy $(( $(date +%s) - $(stat -c %Y "$l" 2>/dev/null || date +%s) )) $(cut -d' ' -f4- "$l/owner" 2>/dev/null)"
    exit 0
  fi
fi
printf '%s %s %s %s\n' "$$" "$b" "$(started $$)" "$1" > "$l/owner.$$" && mv -f "$l/owner.$$" "$l/owner"
echo "locked $broke"
cat > /dev/null
read -r p rest < "$l/owner" 2>/dev/null && [ "$p" = "$$" ] && rm -rf -- "$l"
`.replaceAll('\\${', '${')

export type HostLock =
  | {held: true; /** the owner of a stale lock that was removed to take this one */ brokeStale?: string; release(): Promise<void>}
  | {held: false; /** who holds it, as its taker named itself */ holder: string; /** seconds since it was taken */ ageS: number}

/**
 * Takes the host's lock for `who` (a line naming this run and boot, shown to a run that finds the
 * host busy): held until release() or the end of this SSH connection.
 */
export async function takeHostLock(session: SshSession, who: string): Promise<HostLock> {
  const keeper = await session.hold(['sh', '-c', KEEPER, 'cvm-image-host-lock', who.replace(/[\r\n]/g, ' ')])
  const line = await keeper.firstLine
  if (line?.startsWith('locked')) {
    const broke = line.slice('locked'.length).trim()
    return {
      held: true,
      ...(broke ? {brokeStale: broke} : {}),
      release: async () => void (await keeper.release()),
    }
  }
  const {exitCode, output} = await keeper.ended
  const busy = /^busy (\d+) ?(.*)$/.exec(line ?? '')
  if (!busy) throw new Error(`the host lock's keeper on ${session.where} exited with ${exitCode} and printed ${JSON.stringify(output.slice(-300))}`)
  return {held: false, holder: busy[2] || 'a run that has not yet written its owner line', ageS: Number(busy[1])}
}
