import {expect} from 'vitest'

import {InputError} from '../../src/errors.js'

/** The InputError a call throws (exit 2, bad input); fails the test when it throws another or none. */
export function inputRefusal(f: () => unknown): InputError {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(InputError)
    return e as InputError
  }
  throw new Error('not refused')
}
