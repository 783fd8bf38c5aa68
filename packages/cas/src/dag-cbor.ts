/**
 * Strict DAG-CBOR objects: one value, one encoding, so one CID. `decodeStrict` decodes
 * bytes, reads the value with a reader built from `shape` (every key known, none missing,
 * every value of its type and range), and refuses bytes the encoder would not have written
 * for the value it read (trailing bytes, duplicate keys, non-minimal integers, floats, key
 * order). What an object means stays with the layer that defines it; this module holds
 * only the rules every such object follows.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { ObjectShapeError } from './errors.js'

/** A decoded DAG-CBOR map. */
export type StrictMap = Record<string, unknown>

/** How one kind of object is decoded; see `decodeStrict`. */
export interface StrictDecoder<T> {
  /** Refuse, with the caller's own errors, a value of another kind or version (before `read`). */
  check?(value: unknown): void
  /** The object from the decoded value; throws `ObjectShapeError` (the `shape` readers do). */
  read(value: unknown): T
  /** The plain data the object is encoded from; its encoding must be the very bytes decoded. */
  form(object: T): unknown
  /** The caller's corrupt-object error, for bytes that are not DAG-CBOR, misshapen or not canonical. */
  corrupt(reason: string, options?: ErrorOptions): Error
}

/** The canonical DAG-CBOR bytes of plain data (maps with sorted keys, minimal integers). */
export function encodeStrict(form: unknown): Uint8Array {
  return dagCbor.encode(form)
}

/** Decode `bytes` into an object under the rules above, or throw `decoder.corrupt(...)`. */
export function decodeStrict<T>(bytes: Uint8Array, decoder: StrictDecoder<T>): T {
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch (cause) {
    throw decoder.corrupt(`not valid DAG-CBOR (${(cause as Error).message})`, { cause })
  }
  decoder.check?.(value)
  let object: T
  try {
    object = decoder.read(value)
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code === ObjectShapeError.code) {
      throw decoder.corrupt((error as ObjectShapeError).reason)
    }
    throw error
  }
  if (!Buffer.from(dagCbor.encode(decoder.form(object))).equals(bytes)) {
    throw decoder.corrupt('it is not in canonical DAG-CBOR form')
  }
  return object
}

const UINT64_MAX = 2n ** 64n - 1n

function fail(reason: string): never {
  throw new ObjectShapeError(reason)
}

/**
 * Readers of decoded values: each returns the value typed, or throws `ObjectShapeError`
 * naming `path` (a check across fields throws one itself). A reader of one object kind is written from these, e.g.
 * `const o = shape.map(value, 'compressor', ['dim', 'bits']); shape.int(o.bits, 'bits', 1, 8)`.
 */
export const shape = {
  /** A map with exactly `keys`, and any of `optional`. */
  map(value: unknown, path: string, keys: readonly string[], optional: readonly string[] = []): StrictMap {
    if (
      typeof value !== 'object' ||
      value === null ||
      Array.isArray(value) ||
      value instanceof Uint8Array ||
      CID.asCID(value) !== null
    ) {
      fail(`${path} must be a map`)
    }
    const map = value as StrictMap
    for (const key of Object.keys(map)) {
      if (!keys.includes(key) && !optional.includes(key)) fail(`${path} has an unknown key '${key}'`)
    }
    for (const key of keys) if (!(key in map)) fail(`${path} is missing '${key}'`)
    return map
  },

  string(value: unknown, path: string): string {
    if (typeof value !== 'string') fail(`${path} must be a string`)
    return value
  },

  oneOf<T extends string>(value: unknown, path: string, allowed: readonly T[]): T {
    if (!allowed.includes(value as T)) fail(`${path} must be one of ${allowed.join(', ')}`)
    return value as T
  },

  /** A safe integer from 0 up. */
  count(value: unknown, path: string): number {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      fail(`${path} must be a non-negative integer`)
    }
    return value
  },

  /** An integer from `min` to `max`. */
  int(value: unknown, path: string, min: number, max: number): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      fail(`${path} must be an integer from ${min} to ${max}`)
    }
    return value
  },

  /** An unsigned 64-bit integer (DAG-CBOR decodes the small ones as numbers). */
  uint64(value: unknown, path: string): bigint {
    const big = typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : value
    if (typeof big !== 'bigint' || big < 0n || big > UINT64_MAX) fail(`${path} must be a uint64`)
    return big
  },

  bool(value: unknown, path: string): boolean {
    if (typeof value !== 'boolean') fail(`${path} must be a boolean`)
    return value
  },

  link(value: unknown, path: string): CID {
    const cid = CID.asCID(value)
    if (cid === null) fail(`${path} must be a CID link`)
    return cid
  },

  /** A byte string of exactly `length` bytes. */
  bytes(value: unknown, path: string, length: number): Uint8Array {
    if (!(value instanceof Uint8Array) || value.length !== length) fail(`${path} must be ${length} bytes`)
    return value
  },

  nullable<T>(value: unknown, read: (value: unknown) => T): T | null {
    return value === null ? null : read(value)
  },

  list<T>(value: unknown, path: string, read: (item: unknown, path: string) => T): T[] {
    if (!Array.isArray(value)) fail(`${path} must be a list`)
    return value.map((item, i) => read(item, `${path}[${i}]`))
  },

  /** A map of any string keys to values `read` accepts. */
  record<T>(value: unknown, path: string, read: (item: unknown, path: string) => T): Record<string, T> {
    const map = shape.map(value, path, [], Object.keys((value as StrictMap) ?? {}))
    const out: Record<string, T> = {}
    for (const [key, item] of Object.entries(map)) out[key] = read(item, `${path}.${key}`)
    return out
  },
}
