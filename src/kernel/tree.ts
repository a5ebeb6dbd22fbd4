import {rename} from 'node:fs/promises'

import {run} from '../util/exec.js'

/**
 * A copy of a tree that shares file contents with the original (hard links): cheap, and safe
 * because patch(1) writes each changed file anew, which breaks the link for that file only.
 */
export async function linkCopy(from: string, to: string): Promise<void> {
  await run('cp', ['-al', from, to], {what: `copy the tree ${from}`})
}

/** Moves a directory, copying (with links) only when it must cross file systems. */
export async function moveTree(from: string, to: string): Promise<void> {
  try {
    await rename(from, to)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e
    await run('cp', ['-a', from, to], {what: `move the tree ${from}`})
  }
}
