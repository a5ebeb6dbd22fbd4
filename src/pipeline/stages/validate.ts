import {StageError} from '../../errors.js'
import type {Stage} from '../stage.js'

// Not built yet: the issue that owns this stage replaces this file.
export const validateStage: Stage = {
  name: 'validate',
  title: 'validate',
  version: 0,
  needs: ['assemble', 'compile'],
  inputs: () => ({}),
  async run() {
    throw new StageError('stage validate is not implemented yet')
  },
}
