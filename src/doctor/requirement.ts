import type {StageName} from '../pipeline/stage-names.js'

/** A host tool (a command on PATH or a file) a stage needs, and the Debian package that provides it. */
export interface ToolRequirement {
  /** a command name, or an absolute path for files such as firmware */
  tool: string
  package: string
  stages: (StageName | 'publish' | 'tests')[]
  why: string
}
