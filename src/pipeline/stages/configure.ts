import {StageError} from '../../errors.js'
import type {Stage} from '../stage.js'

// Not built yet: the issue that owns this stage replaces this file.
export const configureStage: Stage = {
  name: 'configure',
  title: 'configure',
  version: 0,
  needs: ['patch'],
  inputs: () => ({}),
  async run() {
    throw new StageError('stage configure is not implemented yet')
  },
}
