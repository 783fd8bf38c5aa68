import { randomBytes } from 'node:crypto'
import { InvalidRefNameError, RefCorruptError } from './errors.js'

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/
export const MAX_REF_NAME = 255
/**
 * Characters in one `/`-separated segment, at most. A segment becomes a file name on a
 * folder store and on MinIO, where names stop at 255 bytes: a folder store adds up to 30
 * characters (`<segment>.ref.lock.tmp-<16 hex>`, a staged lock) and MinIO 4 (`.ref`); 200
 * keeps room to spare on both.
 */
export const MAX_REF_SEGMENT = 200

/**
 * Throw `InvalidRefNameError` unless `name` is a valid ref name: 1 to 255 characters of
 * `/`-separated segments of at most 200 characters each, made of `[A-Za-z0-9._-]`, not
 * starting with `.` or `-`, not ending in `.` (git refuses a trailing dot), `.lock` or
 * `.ref` (folder stores use those suffixes), and without `..`. Ref names become object
 * keys and file paths, so these rules keep them portable; every name they accept can be
 * stored on every backend.
 */
export function assertValidRefName(name: string): void {
  const fail = (reason: string): never => {
    throw new InvalidRefNameError(name, reason)
  }
  if (typeof name !== 'string' || name.length === 0) fail('it is empty')
  if (name.length > MAX_REF_NAME) fail(`it is ${name.length} characters long; the limit is ${MAX_REF_NAME}`)
  for (const segment of name.split('/')) {
    if (segment.length === 0) fail('it has an empty path segment (a leading, trailing or doubled "/")')
    if (segment.length > MAX_REF_SEGMENT) {
      fail(
        `segment '${segment.slice(0, 16)}…' is ${segment.length} characters long; the limit is ${MAX_REF_SEGMENT} per segment`,
      )
    }
    if (!SEGMENT.test(segment)) {
      fail(
        `segment '${segment}' must start with a letter, digit or "_" and use only letters, digits, ".", "_", "-"`,
      )
    }
    if (segment.endsWith('.lock') || segment.endsWith('.ref')) {
      fail(`segment '${segment}' ends in "${segment.endsWith('.ref') ? '.ref' : '.lock'}", which is reserved`)
    }
    if (segment.includes('..')) fail(`segment '${segment}' contains ".."`)
    if (segment.endsWith('.')) fail(`segment '${segment}' ends in ".", which git refuses`)
  }
}

/** Throw unless `prefix` could start a valid ref name (empty, or segments ending in "/"). */
export function assertValidRefPrefix(prefix: string): void {
  if (prefix === '') return
  const probe = prefix.endsWith('/') ? `${prefix}x` : prefix
  assertValidRefName(probe)
}

/**
 * What a ref object holds: the caller's value plus a generation (monotonic per ref) and a
 * random transaction id. The txn makes every body unique, so S3 ETags never repeat (no
 * ABA), and lets a writer recognise its own write after a lost response.
 */
export interface RefEnvelope {
  generation: number
  txn: string
  value: Uint8Array
}

const FORMAT = 'dreamdb.ref/1'

export function newTxn(): string {
  return randomBytes(12).toString('base64url')
}

export function encodeRefEnvelope(envelope: RefEnvelope): Uint8Array {
  const body = {
    format: FORMAT,
    generation: envelope.generation,
    txn: envelope.txn,
    value: Buffer.from(envelope.value).toString('base64'),
  }
  return new TextEncoder().encode(`${JSON.stringify(body)}\n`)
}

export function decodeRefEnvelope(name: string, store: string, bytes: Uint8Array): RefEnvelope {
  let body: unknown
  try {
    body = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (cause) {
    throw new RefCorruptError(name, 'its body is not UTF-8 JSON', store, { cause })
  }
  if (typeof body !== 'object' || body === null)
    throw new RefCorruptError(name, 'its body is not an object', store)
  const { format, generation, txn, value } = body as Record<string, unknown>
  if (format !== FORMAT) throw new RefCorruptError(name, `unknown format ${JSON.stringify(format)}`, store)
  if (typeof generation !== 'number' || !Number.isSafeInteger(generation) || generation < 1) {
    throw new RefCorruptError(
      name,
      `generation ${JSON.stringify(generation)} is not a positive integer`,
      store,
    )
  }
  if (typeof txn !== 'string' || txn.length === 0) throw new RefCorruptError(name, 'txn is missing', store)
  if (typeof value !== 'string') throw new RefCorruptError(name, 'value is not a base64 string', store)
  return { generation, txn, value: new Uint8Array(Buffer.from(value, 'base64')) }
}
