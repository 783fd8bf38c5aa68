import { isAbsolute, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { InvalidBackendUrlError } from './errors.js'

/** Where a backend URL points, after validation. */
export type BackendLocation =
  | { kind: 'memory'; name: string }
  | { kind: 'fs'; root: string }
  | { kind: 's3'; endpoint: string | undefined; bucket: string; prefix: string }

// S3 bucket naming rules (3-63 chars, lowercase letters, digits, dots and hyphens).
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/
const SCHEME = /^([a-zA-Z][a-zA-Z0-9+.-]*):/

/**
 * Parse a backend URL: a folder path (relative to `cwd`) or `file:///abs/path`,
 * `memory://[name]`, `http(s)://host[:port]/bucket[/prefix]` for any S3-compatible server
 * (path-style), or `s3://bucket[/prefix]` for AWS. Throws `InvalidBackendUrlError`.
 *
 * @example
 * ```ts
 * parseBackendUrl('http://localhost:9000/imagenet-100')
 * // { kind: 's3', endpoint: 'http://localhost:9000', bucket: 'imagenet-100', prefix: '' }
 * ```
 */
export function parseBackendUrl(url: string, cwd: string = process.cwd()): BackendLocation {
  if (typeof url !== 'string' || url.trim() === '')
    throw new InvalidBackendUrlError(String(url), 'it is empty')
  const scheme = SCHEME.exec(url)?.[1]?.toLowerCase()
  // A Windows drive letter ("C:\data") is a path, not a scheme.
  if (scheme === undefined || (scheme.length === 1 && process.platform === 'win32')) {
    return { kind: 'fs', root: isAbsolute(url) ? resolve(url) : resolve(cwd, url) }
  }
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new InvalidBackendUrlError(redact(url), 'it is not a well-formed URL')
  }
  if (parsed.username !== '' || parsed.password !== '') {
    throw new InvalidBackendUrlError(
      redact(url),
      'credentials do not belong in the URL; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE',
    )
  }
  if (parsed.search !== '' || parsed.hash !== '') {
    throw new InvalidBackendUrlError(url, 'query strings and fragments are not supported')
  }
  switch (scheme) {
    case 'memory':
      if (parsed.pathname !== '' && parsed.pathname !== '/') {
        throw new InvalidBackendUrlError(url, 'a memory URL is memory:// or memory://name')
      }
      return { kind: 'memory', name: parsed.hostname }
    case 'file':
      if (parsed.hostname !== '' && parsed.hostname !== 'localhost') {
        throw new InvalidBackendUrlError(
          url,
          `file URLs on another host ('${parsed.hostname}') are not supported`,
        )
      }
      return { kind: 'fs', root: fileURLToPath(parsed) }
    case 'http':
    case 'https': {
      const [bucket, ...rest] = parsed.pathname.split('/').filter((part) => part !== '')
      if (bucket === undefined) {
        throw new InvalidBackendUrlError(
          url,
          'the bucket is missing: use http(s)://host:port/<bucket>[/<prefix>]',
        )
      }
      return { kind: 's3', endpoint: parsed.origin, bucket: checkBucket(url, bucket), prefix: prefixOf(rest) }
    }
    case 's3': {
      if (parsed.hostname === '')
        throw new InvalidBackendUrlError(url, 'the bucket is missing: use s3://<bucket>')
      const rest = parsed.pathname.split('/').filter((part) => part !== '')
      return {
        kind: 's3',
        endpoint: undefined,
        bucket: checkBucket(url, parsed.hostname),
        prefix: prefixOf(rest),
      }
    }
    default:
      throw new InvalidBackendUrlError(url, `unknown scheme '${scheme}:'`)
  }
}

function checkBucket(url: string, bucket: string): string {
  if (!BUCKET.test(bucket) || bucket.includes('..')) {
    throw new InvalidBackendUrlError(
      url,
      `'${bucket}' is not a valid bucket name (3-63 lowercase letters, digits, '.' or '-')`,
    )
  }
  return bucket
}

function prefixOf(parts: string[]): string {
  return parts.length === 0 ? '' : `${parts.map(decodeURIComponent).join('/')}/`
}

/** The URL with any user:password removed, for messages. */
function redact(url: string): string {
  return url.replace(/\/\/[^/@]*@/, '//***@')
}
