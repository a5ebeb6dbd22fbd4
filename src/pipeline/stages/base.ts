import {StageError} from '../../errors.js'
import type {Stage} from '../stage.js'

// Not built yet: the issue that owns this stage replaces this file.
export const baseStage: Stage = {
  name: 'base',
  title: 'base',
  version: 0,
  needs: [],
  inputs: () => ({}),
  async run() {
    throw new StageError('stage base is not implemented yet')
  },
}
