import type {Stage} from '../stage.js'
import {assembleStage} from './assemble.js'
import {baseStage} from './base.js'
import {compileStage} from './compile.js'
import {configureStage} from './configure.js'
import {kernelSourceStage} from './kernel-source.js'
import {patchStage} from './patch.js'
import {validateStage} from './validate.js'

/** The stages in the order they run (README "The pipeline"). */
export const STAGES: Stage[] = [baseStage, kernelSourceStage, patchStage, configureStage, compileStage, assembleStage, validateStage]
