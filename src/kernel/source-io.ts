import type {KernelSourceSpec} from '../recipe/schema.js'

/**
 * What fetching a kernel source takes and gives, shared by the common fetchers (kernel/source.ts)
 * and each distro module's own (src/distro/): a leaf, so neither side imports the other for it.
 */
export interface FetchedSource {
  kind: KernelSourceSpec['kind']
  /** the unpacked tree, in the shared tree cache (read-only by convention: copy before changing) */
  tree: string
  /** sha256 of the source archive (.deb, tarball or .src.rpm) or the git commit id */
  digest: string
  /** "linux-source-5.10 5.10.223-1" for Debian packages */
  package?: string
}

export interface SourceIO {
  cacheDir: string
  /** a local copy of the source archive (--kernel-source-file): used instead of downloading */
  localFile?: string
  work: string
  logFile?: string
  signal?: AbortSignal
  progress(line: string): void
}
