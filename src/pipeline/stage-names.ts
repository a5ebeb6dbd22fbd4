/**
 * The stages of a build, in order (README "The pipeline"). Publish is not cached: it is a side
 * effect at a target. A leaf: the stage interface, the results and the host-tool table name
 * stages without importing the pipeline.
 */
export const STAGE_NAMES = ['base', 'kernel-source', 'patch', 'configure', 'compile', 'assemble', 'validate'] as const
export type StageName = (typeof STAGE_NAMES)[number]
