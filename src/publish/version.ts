import {InputError} from '../errors.js'
import type {BuildRecord} from '../pipeline/build-record.js'

/**
 * The release version: recipe.publish.version when set, else "<SOURCE_DATE_EPOCH>-<first 12 hex of the
 * assemble key>". The assemble key hashes every input of the disk, so one version names one disk:
 * a rebuild of the same inputs lands on the same version (and publishes nothing new), a changed input
 * gets a new version, and versions of one recipe sort by SOURCE_DATE_EPOCH.
 */
export function releaseVersion(record: BuildRecord): string {
  if (record.recipe.publish?.version) return record.recipe.publish.version
  const key = record.stages.assemble?.key
  if (!key) {
    throw new InputError(`build record of ${record.recipeId} has no assemble stage, so there is no disk to publish`, {hint: `run \`cvm-image build ${record.recipeId}\` to completion first`})
  }
  return `${record.sourceDateEpoch}-${key.slice(0, 12)}`
}
