/**
 * Where things live under a store's root (a folder, or a bucket and prefix). The same
 * relative keys are used on every backend; design/0002-object-store.md is the reference.
 */

const OBJECTS = 'objects/sha2-256/'
export const REFS = 'refs/'
export const STAGING = 'tmp/'
export const PROBES = '_probe/'

/** `objects/sha2-256/ab/abcdef…`: the lowercase hex digest, fanned out by its first byte. */
export function objectKey(hexDigest: string): string {
  return `${OBJECTS}${hexDigest.slice(0, 2)}/${hexDigest}`
}

/** The object-key prefix that holds every digest starting with `digestPrefix`. */
export function objectListPrefix(digestPrefix: string): string {
  return digestPrefix.length >= 2
    ? `${OBJECTS}${digestPrefix.slice(0, 2)}/${digestPrefix}`
    : `${OBJECTS}${digestPrefix}`
}

/** The hex digest an object key names, or `undefined` for anything else. */
export function digestFromObjectKey(key: string): string | undefined {
  if (!key.startsWith(OBJECTS)) return undefined
  const match = /^([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(key.slice(OBJECTS.length))
  return match !== null && match[2]!.startsWith(match[1]!) ? match[2] : undefined
}

/**
 * Ref objects carry a `.ref` suffix so that refs `a` and `a/b` can both exist on stores
 * that map keys to files (a folder, MinIO): the file `a.ref` sits beside the folder `a/`.
 */
const REF_SUFFIX = '.ref'

export function refKey(name: string): string {
  return `${REFS}${name}${REF_SUFFIX}`
}

/** The ref name a ref key holds, or `undefined` for anything else (locks, strays). */
export function refNameFromKey(key: string): string | undefined {
  return key.startsWith(REFS) && key.endsWith(REF_SUFFIX)
    ? key.slice(REFS.length, -REF_SUFFIX.length)
    : undefined
}
