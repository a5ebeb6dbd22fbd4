import {StageError} from '../errors.js'

/** p, or a rejection naming what timed out after ms; the timer never outlives p. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new StageError(`${what} timed out after ${Math.round(ms / 1000)} s`)), ms)
    }),
  ])
}
