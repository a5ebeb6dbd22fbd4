/**
 * makeRootFilesystem on its own, for tests that run it as an unprivileged user.
 * argv[2]: a JSON file {tarball, image, sizeBytes, uuid, hashSeed, sourceDateEpoch, work, xattrs: [{name, key, hex}]}.
 */
import {readFileSync} from 'node:fs'

import {makeRootFilesystem} from '../../src/disk/ext4.js'
import {isCvmError} from '../../src/errors.js'

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'))
try {
  await makeRootFilesystem({
    ...spec,
    label: 'root',
    xattrs: spec.xattrs.map((x: {name: string; key: string; hex: string}) => ({name: x.name, key: x.key, value: Buffer.from(x.hex, 'hex')})),
  })
} catch (e) {
  console.error(isCvmError(e) ? e.render() : e)
  process.exit(isCvmError(e) ? e.exitCode : 70)
}
