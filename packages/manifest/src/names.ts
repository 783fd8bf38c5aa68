import { assertValidRefName } from '@dreamdb/cas'
import { InvalidRefNameError } from './errors.js'

/** Refs the manifest layer keeps for itself live under this prefix. */
export const INTERNAL_PREFIX = '_dreamdb/'

/**
 * Characters in a dataset, branch or snapshot name, at most. Lower than the 255 of
 * `@dreamdb/cas` so that DreamDB's own refs derived from a name (such as the CLI's
 * `_dreamdb/leases/ingest/<name>`) fit too; with the per-segment limit of `@dreamdb/cas`
 * (200) every accepted name can be stored on a folder, in memory and on S3/MinIO.
 */
export const MAX_USER_REF_NAME = 200

/**
 * Throw `InvalidRefNameError` unless `name` can name a dataset, branch or snapshot:
 * 1 to 200 characters that `git check-ref-format --allow-onelevel` accepts, restricted
 * further to what every backend stores as is. In git's terms: no `..`, no ASCII control
 * character, space, `~`, `^`, `:`, `?`, `*`, `[`, `\` or `@{`, not `@`, no leading,
 * trailing or doubled `/`, no component starting with `.` or ending in `.lock`, no
 * trailing `.`. In addition (`@dreamdb/cas`): only letters, digits, `.`, `_`, `-` in
 * `/`-separated segments of at most 200 characters, none starting with `-` nor ending in
 * `.` or `.ref`; and names starting with `_` are reserved for DreamDB's own refs.
 */
export function assertUserRefName(name: string): void {
  const fail = (reason: string): never => {
    throw new InvalidRefNameError(String(name), reason)
  }
  if (typeof name !== 'string') fail(`a ref name is a string, not ${name === null ? 'null' : typeof name}`)
  if (name.length === 0) fail('it is empty')
  if (name.startsWith('_')) fail('names starting with "_" are reserved for DreamDB')
  if (name.length > MAX_USER_REF_NAME) {
    fail(`it is ${name.length} characters long; the limit is ${MAX_USER_REF_NAME}`)
  }
  // git check-ref-format, rule by rule, so the reason names the rule that is broken.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
  const forbidden = /[\u0000-\u0020\u007f~^:?*[\\]/.exec(name)
  if (forbidden !== null) {
    const c = forbidden[0]
    const shown =
      c <= ' ' || c === '\u007f' ? `"\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}"` : `"${c}"`
    fail(`it contains ${c === ' ' ? 'a space' : shown}, which git refuses in a ref name`)
  }
  if (name === '@') fail('"@" alone is not a ref name in git')
  if (name.includes('@{')) fail('it contains "@{", which git refuses')
  if (name.includes('..')) fail('it contains "..", which git refuses')
  if (name.startsWith('/') || name.endsWith('/') || name.includes('//')) {
    fail('it has an empty path segment (a leading, trailing or doubled "/")')
  }
  if (name.endsWith('.')) fail('it ends in ".", which git refuses')
  for (const segment of name.split('/')) {
    if (segment.startsWith('.')) fail(`segment '${segment}' starts with ".", which git refuses`)
    if (segment.endsWith('.lock')) fail(`segment '${segment}' ends in ".lock", which git refuses`)
  }
  try {
    assertValidRefName(name)
  } catch (cause) {
    throw new InvalidRefNameError(name, (cause as { reason?: string }).reason ?? String(cause), {
      cause,
    })
  }
}
