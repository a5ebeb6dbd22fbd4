import {InputError} from '../../errors.js'

/** Where a stage cache lives: a repository in an OCI registry, reached over HTTPS. */
export interface OciRepository {
  /** host[:port], as credentials and TLS name it */
  host: string
  /** the repository path, e.g. team/cvm-cache */
  repository: string
  /** oci://host/repository, for messages */
  display: string
}

// the distribution spec's repository name grammar: lowercase path components joined by . _ __ or -
const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/
// a DNS name or IPv4 address, then an optional port; IPv6 literals are left out (no bracket form here)
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::(\d{1,5}))?$/

/** Parses `oci://host[:port]/repo[/...]`; the flag names the option in the refusal. Refuses a tag or digest: the cache makes its own. */
export function parseOciReference(text: string, flag: string): OciRepository {
  const refuse = (why: string): never => {
    throw new InputError(`${flag} ${JSON.stringify(text)} is not a registry repository: ${why}`, {
      hint: `give oci://HOST[:PORT]/REPOSITORY, e.g. ${flag} oci://registry.example.com/team/cvm-cache`,
    })
  }
  if (!text.startsWith('oci://')) refuse('it does not start with oci://')
  const rest = text.slice('oci://'.length)
  const slash = rest.indexOf('/')
  if (slash <= 0) refuse('it names no repository after the host')
  const host = rest.slice(0, slash)
  const repository = rest.slice(slash + 1).replace(/\/+$/, '')
  const port = HOST.exec(host)
  if (!port) refuse(`${JSON.stringify(host)} is not a host name or address with an optional :port`)
  if (port![1] !== undefined && (Number(port![1]) < 1 || Number(port![1]) > 65535)) refuse(`port ${port![1]} is out of range`)
  if (/[@:]/.test(repository)) refuse('it names a tag or digest; the cache tags its entries itself')
  if (repository === '' || !repository.split('/').every((c) => COMPONENT.test(c))) {
    refuse(`repository ${JSON.stringify(repository)} is not lowercase path components of letters and digits joined by . _ or -`)
  }
  if (repository.length > 255) refuse('the repository name is longer than 255 characters')
  return {host, repository, display: `oci://${host}/${repository}`}
}
