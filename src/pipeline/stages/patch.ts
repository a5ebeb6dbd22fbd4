import {StageError} from '../../errors.js'
import type {Stage} from '../stage.js'

// Not built yet: the issue that owns this stage replaces this file.
export const patchStage: Stage = {
  name: 'patch',
  title: 'patch',
  version: 0,
  needs: ['kernel-source'],
  inputs: () => ({}),
  async run() {
    throw new StageError('stage patch is not implemented yet')
  },
}
