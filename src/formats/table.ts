import type {ToolRequirement} from '../doctor/requirement.js'
import type {ImageFormat} from '../recipe/schema.js'
import {rawToGceTarball} from './gce.js'
import {rawToQcow2} from './qcow2.js'

export interface ConvertOptions {
  sourceDateEpoch: number
  signal?: AbortSignal
}

/**
 * One output format: its row is all there is to it. A new format is a name in IMAGE_FORMATS
 * (src/recipe/schema.ts), a file here that converts the raw disk, and a row in FORMATS; the type
 * of FORMATS refuses to compile while a name has no row.
 */
export interface FormatRow {
  /** the file name at the target; gceName is the image name a GCE tarball is named for */
  publishedName: (gceName: string) => string
  /** the converted file in the staging directory, made by convert; none for the raw disk itself */
  staged?: {file: string; convert: (raw: string, out: string, opts: ConvertOptions) => Promise<void>}
  /** the host tools the conversion runs (cvm-image doctor, stage publish) */
  tools: ToolRequirement[]
}

export const FORMATS: Record<ImageFormat, FormatRow> = {
  raw: {publishedName: () => 'disk.raw', tools: []},
  qcow2: {
    publishedName: () => 'disk.qcow2',
    staged: {file: 'disk.qcow2', convert: rawToQcow2},
    tools: [{tool: 'qemu-img', package: 'qemu-utils', stages: ['publish'], why: 'the qcow2 format'}],
  },
  gce: {
    publishedName: (gceName) => `${gceName}.tar.gz`,
    staged: {file: 'gce.tar.gz', convert: rawToGceTarball},
    tools: [
      {tool: 'tar', package: 'tar', stages: ['publish'], why: 'the GCE oldgnu sparse tarball'},
      {tool: 'pigz', package: 'pigz', stages: ['publish'], why: 'the GCE tarball, gzipped on every core'},
    ],
  },
}
