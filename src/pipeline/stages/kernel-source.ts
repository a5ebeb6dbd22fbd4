import {StageError} from '../../errors.js'
import type {Stage} from '../stage.js'

// Not built yet: the issue that owns this stage replaces this file.
export const kernelSourceStage: Stage = {
  name: 'kernel-source',
  title: 'kernel-source',
  version: 0,
  needs: [],
  inputs: () => ({}),
  async run() {
    throw new StageError('stage kernel-source is not implemented yet')
  },
}
