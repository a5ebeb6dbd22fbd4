import {STAGE_NAMES, type Stage} from '../stage.js'
import {assembleStage} from './assemble.js'
import {baseStage} from './base.js'
import {compileStage} from './compile.js'
import {configureStage} from './configure.js'
import {kernelSourceStage} from './kernel-source.js'
import {patchStage} from './patch.js'
import {validateStage} from './validate.js'

/**
 * The stages in the order they run (README "The pipeline"): STAGE_NAMES (stage-names.ts, a leaf the
 * types import) and this list are one list, kept so by the compiler: the n-th stage here must be
 * named the n-th of STAGE_NAMES, and the two have the same length.
 */
const ORDERED = [baseStage, kernelSourceStage, patchStage, configureStage, compileStage, assembleStage, validateStage] as const satisfies NamedAs<typeof STAGE_NAMES>
export const STAGES: Stage[] = [...ORDERED]

/** a tuple of things named, in order, as the tuple of names T */
type NamedAs<T extends readonly string[]> = {readonly [K in keyof T]: {name: T[K]}}
