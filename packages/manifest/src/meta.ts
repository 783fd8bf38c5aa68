/**
 * Structured commit metadata: a small map a commit carries beside its message (ingest
 * progress, a run's configuration), read back by `log` and `inspect` as data instead of
 * parsed out of message text. One set of rules serves the commit (a typed error before
 * anything is written) and the decoder (a corrupt manifest), so what one accepts the
 * other reads.
 */
import { encodeStrict, ObjectShapeError } from '@dreamdb/cas'
import { CID } from 'multiformats/cid'
import { InvalidMetaError } from './errors.js'
import type { CommitMeta, MetaValue } from './model.js'

/** The largest `meta` a manifest carries, as encoded DAG-CBOR. */
export const MAX_META_BYTES = 16 * 1024
/** Maps and lists nested deeper than this are refused (the decoder recurses). */
export const MAX_META_DEPTH = 16

/**
 * The meta a commit was given, checked: a plain object of string keys to strings, safe
 * integers, booleans, `null`, lists and plain objects of the same, at most `MAX_META_BYTES`
 * encoded. `undefined` and `{}` are no meta (so a commit without meta keeps the old form).
 * Otherwise InvalidMetaError naming the offending key.
 */
export function checkMeta(meta: unknown): CommitMeta | undefined {
  if (meta === undefined) return undefined
  const fail = (key: string, reason: string): never => {
    throw new InvalidMetaError(key, reason)
  }
  const checked = readValue(meta, 'meta', 0, fail, true)
  if (!isMap(checked)) return fail('meta', 'must be a map of string keys')
  if (Object.keys(checked).length === 0) return undefined
  assertSize(checked, fail)
  return checked
}

/** `meta` as decoded from a stored manifest; ObjectShapeError (the manifest is corrupt) otherwise. */
export function readMeta(value: unknown, path: string): CommitMeta {
  const fail = (key: string, reason: string): never => {
    throw new ObjectShapeError(`${key} ${reason}`)
  }
  const meta = readValue(value, path, 0, fail, false)
  if (!isMap(meta)) return fail(path, 'must be a map')
  // An empty map is written as no meta at all: one state, one encoding.
  if (Object.keys(meta).length === 0) return fail(path, 'is empty (a manifest without meta omits the key)')
  assertSize(meta, fail)
  return meta
}

type Fail = (key: string, reason: string) => never

function isMap(value: MetaValue): value is CommitMeta {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function assertSize(meta: CommitMeta, fail: Fail): void {
  const size = encodeStrict(meta).length
  if (size > MAX_META_BYTES) fail('meta', `is ${size} bytes encoded, more than ${MAX_META_BYTES}`)
}

/** A copy of `value` made of plain values only; `plainObjects` also refuses class instances (input). */
function readValue(value: unknown, key: string, depth: number, fail: Fail, plainObjects: boolean): MetaValue {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value
    case 'number':
      if (!Number.isSafeInteger(value))
        fail(key, `must be a safe integer, not ${value} (floats are not kept)`)
      return value
    case 'bigint':
      return fail(key, 'must be a safe integer (a bigint is not kept; write large numbers as strings)')
    case 'object': {
      if (value === null) return null
      if (depth >= MAX_META_DEPTH) fail(key, `nests deeper than ${MAX_META_DEPTH} levels`)
      if (Array.isArray(value)) {
        return value.map((item, i) => readValue(item, `${key}[${i}]`, depth + 1, fail, plainObjects))
      }
      const proto = Object.getPrototypeOf(value)
      if (plainObjects ? proto !== Object.prototype && proto !== null : isSpecial(value)) {
        fail(key, `must be a string, integer, boolean, null, list or plain map, not ${describe(value)}`)
      }
      const out: CommitMeta = {}
      for (const [k, item] of Object.entries(value as Record<string, unknown>)) {
        out[k] = readValue(item, `${key}.${k}`, depth + 1, fail, plainObjects)
      }
      return out
    }
    default:
      return fail(key, `must be a string, integer, boolean, null, list or plain map, not ${typeof value}`)
  }
}

/** What DAG-CBOR decodes that is not a map: bytes and links. */
function isSpecial(value: object): boolean {
  return value instanceof Uint8Array || CID.asCID(value) !== null
}

function describe(value: object): string {
  if (value instanceof Uint8Array) return 'bytes'
  if (CID.asCID(value) !== null) return 'a CID link'
  return (value as { constructor?: { name?: string } }).constructor?.name ?? 'an object'
}
