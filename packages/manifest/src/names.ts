import { assertValidRefName } from '@dreamdb/cas'
import { InvalidRefNameError } from './errors.js'

/** Refs the manifest layer keeps for itself live under this prefix. */
export const INTERNAL_PREFIX = '_dreamdb/'

/**
 * Throw `InvalidRefNameError` unless `name` can name a dataset, branch or snapshot.
 * The rules are those of `@dreamdb/cas` (a strict subset of `git check-ref-format`:
 * `/`-separated segments of letters, digits, `.`, `_` and `-`, no `..`, no leading or
 * trailing `/`, nothing that can leave the ref folder) plus one: names starting with `_`
 * are reserved for DreamDB's own refs.
 */
export function assertUserRefName(name: string): void {
  if (typeof name === 'string' && name.startsWith('_')) {
    throw new InvalidRefNameError(name, 'names starting with "_" are reserved for DreamDB')
  }
  try {
    assertValidRefName(name)
  } catch (cause) {
    throw new InvalidRefNameError(String(name), (cause as { reason?: string }).reason ?? String(cause), {
      cause,
    })
  }
}
