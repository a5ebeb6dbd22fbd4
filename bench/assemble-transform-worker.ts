/** One transform run for bench/assemble-transform.ts, in its own process so its peak RSS is its own. */
import {transformRootfs} from '../src/rootfs/transform.js'

const [input, output] = process.argv.slice(2)
const r = await transformRootfs({
  input,
  output,
  remove: ['usr/share/pkg1/*'],
  additions: [{kind: 'file', name: 'etc/cvm-image/build.json', mode: 0o644, content: Buffer.from('{}\n')}],
  allowAbsoluteSymlinks: true,
  sourceDateEpoch: 1_700_000_000,
})
console.log(JSON.stringify({entries: r.entries, removed: r.removed, added: r.added, xattrs: r.xattrs.length}))
