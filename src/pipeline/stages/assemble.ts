import {StageError} from '../../errors.js'
import type {Stage} from '../stage.js'

// Not built yet: the issue that owns this stage replaces this file.
export const assembleStage: Stage = {
  name: 'assemble',
  title: 'assemble',
  version: 0,
  needs: ['base', 'compile'],
  inputs: () => ({}),
  async run() {
    throw new StageError('stage assemble is not implemented yet')
  },
}
