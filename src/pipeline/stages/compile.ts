import {StageError} from '../../errors.js'
import type {Stage} from '../stage.js'

// Not built yet: the issue that owns this stage replaces this file.
export const compileStage: Stage = {
  name: 'compile',
  title: 'compile',
  version: 0,
  needs: ['patch', 'configure'],
  inputs: () => ({}),
  async run() {
    throw new StageError('stage compile is not implemented yet')
  },
}
