import { createHash } from 'node:crypto'
import {
  type AbortOptions,
  type GetOptions,
  ObjectIntegrityError,
  type ReadBuffers,
  type Store,
} from '@dreamdb/cas'
import type { Bucket, Field, FieldObject } from '@dreamdb/manifest'
import type { Vector } from 'apache-arrow'
import {
  type Codecs,
  decodeField,
  decodeFragmentIndex,
  type EncodedField,
  type EncodeOptions,
  encodeField,
  type FragmentIndex,
  fragmentPart,
  keysToRead,
} from './columns.js'
import { CorruptFieldObjectError, InvalidValueError } from './errors.js'

export interface ReadOptions extends AbortOptions {
  /** Requests in flight at once. @default 8 */
  concurrency?: number
  /** Loaded spatial indexes and compressors of compressed embedding fields. */
  codecs?: Codecs
  /** Spare buffers to read the objects into, and where the buffers used go (`Store.get`). */
  buffers?: ReadBuffers | undefined
  /** Rows to put in a new order as objects are read (`Store.get`'s `rows`). */
  rows?: GetOptions['rows']
}

/** The anchors of a timeline bucket's records, in record order. */
export function anchorsOf(bucket: Bucket): BigUint64Array {
  const ranges = bucket.anchorRanges ?? []
  const listed = ranges.reduce((n, range) => n + range.count, 0)
  if (listed !== bucket.records)
    throw new RangeError(`bucket lists ${listed} anchors for ${bucket.records} records`)
  const out = new BigUint64Array(bucket.records)
  // Written as 32-bit halves (little-endian, as typed arrays are on every supported
  // platform): one bigint per range instead of one per record.
  const halves = new Uint32Array(out.buffer)
  let i = 0
  for (const range of ranges) {
    let low = Number(range.start & 0xffffffffn)
    let high = Number(range.start >> 32n)
    for (let k = 0; k < range.count; k++, i++) {
      halves[2 * i] = low
      halves[2 * i + 1] = high
      if (++low === 2 ** 32) {
        low = 0
        high++
      }
    }
  }
  return out
}

/** A bucket's objects, encoded and validated, not yet stored: `[key, bytes]` pairs. */
export type EncodedBucket = [key: string, bytes: Uint8Array][]

/**
 * Validate and encode every field's values for one bucket. Throws InvalidValueError. A
 * binary field's values are cut into fragments of at most `options.fragmentBytes`
 * (`<field>`, then parts `<field>/fragment-1`, ...), so the bucket's size is the caller's
 * choice for its other fields.
 */
export function encodeBucket(
  fields: readonly Field[],
  columns: Readonly<Record<string, readonly unknown[]>>,
  records: number,
  codecs: Codecs = new Map(),
  options: EncodeOptions = {},
): EncodedBucket {
  return fields.flatMap((field) => {
    const values = columns[field.name]
    if (values === undefined) throw new InvalidValueError(field.name, 0, 'the field has no values')
    if (values.length !== records)
      throw new InvalidValueError(field.name, 0, `${values.length} values for ${records} records`)
    const encoded: EncodedField = encodeField(field, values, codecs, options)
    return [
      [field.name, encoded.main] as [string, Uint8Array],
      ...Object.entries(encoded.parts).map(
        ([part, bytes]) => [`${field.name}/${part}`, bytes] as [string, Uint8Array],
      ),
    ]
  })
}

/** Store an encoded bucket's objects; returns them by key, for the manifest's bucket. */
export async function putEncodedBucket(
  store: Store,
  encoded: EncodedBucket,
  options: AbortOptions = {},
): Promise<Record<string, FieldObject>> {
  const out: Record<string, FieldObject> = {}
  let i = 0
  for await (const cid of store.putMany(
    encoded.map(([, bytes]) => bytes),
    options,
  )) {
    const [key, bytes] = encoded[i++]!
    out[key] = { cid, bytes: bytes.byteLength }
  }
  return out
}

/** Read and decode the columns of `fields` for one bucket, fetching only their objects. */
export async function readBucketColumns(
  store: Store,
  fields: readonly Field[],
  bucket: Bucket,
  options: ReadOptions = {},
): Promise<Record<string, Vector>> {
  const keys = Object.keys(bucket.fields)
  const wanted: { key: string; object: FieldObject }[] = fields.flatMap((field) =>
    keysToRead(field, keys).map((key) => ({ key, object: bucket.fields[key]! })),
  )
  const bytes = new Map<string, Uint8Array>()
  let i = 0
  for await (const { bytes: b } of store.getMany(
    wanted.map((w) => w.object.cid),
    { ...options, concurrency: options.concurrency ?? 8 },
  )) {
    bytes.set(wanted[i++]!.key, b)
  }
  const read = (key: string) => {
    const b = bytes.get(key)
    return b === undefined ? undefined : { cid: bucket.fields[key]!.cid.toString(), bytes: b }
  }
  const out: Record<string, Vector> = {}
  for (const field of fields) {
    if (!keys.includes(field.name)) continue // a field added after this bucket was written: nulls
    const parts: Record<string, { cid: string; bytes: Uint8Array }> = {}
    for (const key of keys) {
      const part = key.startsWith(`${field.name}/`) ? read(key) : undefined
      if (part !== undefined) parts[key.slice(field.name.length + 1)] = part
    }
    out[field.name] = decodeField(field, bucket.records, read(field.name), parts, options.codecs)
  }
  return out
}

/**
 * One record of a binary field: one index read and one ranged read of its fragment,
 * verified against the record's own digest.
 */
export async function readBinaryRecord(
  store: Store,
  field: Field,
  bucket: Bucket,
  position: number,
  options: AbortOptions = {},
): Promise<Uint8Array> {
  const main = bucket.fields[field.name]
  const index = bucket.fields[`${field.name}/index`]
  if (field.family !== 'binary' || main === undefined || index === undefined) {
    throw new RangeError(`field '${field.name}' is not a binary field of this bucket`)
  }
  if (!Number.isInteger(position) || position < 0 || position >= bucket.records) {
    throw new RangeError(`record ${position} is outside a bucket of ${bucket.records}`)
  }
  const { offsets, lengths, sha256, fragments } = decodeFragmentIndex(
    field,
    index.cid.toString(),
    await store.get(index.cid, options),
    bucket.records,
  )
  const k = fragments?.[position] ?? 0
  const fragment = k === 0 ? main : bucket.fields[`${field.name}/${fragmentPart(k)}`]
  if (fragment === undefined) {
    throw new CorruptFieldObjectError(field.name, index.cid.toString(), `its fragment ${k} is missing`)
  }
  return await store.getRange(fragment.cid, {
    ...options,
    offset: Number(offsets[position]!),
    length: lengths[position]!,
    sha256: sha256.subarray(position * 32, position * 32 + 32),
  })
}

/**
 * A bucket's binary field index (offset, length and sha2-256 of each record, and its fragment),
 * one read verified against its CID: what `readBinaryRange` needs, kept by a caller that pages
 * through the bucket.
 */
export async function readFragmentIndex(
  store: Store,
  field: Field,
  bucket: Bucket,
  options: AbortOptions = {},
): Promise<FragmentIndex> {
  const index = bucket.fields[`${field.name}/index`]
  if (field.family !== 'binary' || bucket.fields[field.name] === undefined || index === undefined) {
    throw new RangeError(`field '${field.name}' is not a binary field of this bucket`)
  }
  return decodeFragmentIndex(field, index.cid.toString(), await store.get(index.cid, options), bucket.records)
}

/**
 * Records [from, to) of a bucket's binary field, without reading its fragments whole: one
 * ranged read per fragment they lie in (records are back to back in record order), each
 * record then verified against its own digest in the index (ObjectIntegrityError).
 */
export async function readBinaryRange(
  store: Store,
  field: Field,
  bucket: Bucket,
  index: FragmentIndex,
  from: number,
  to: number,
  options: AbortOptions = {},
): Promise<Uint8Array[]> {
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > bucket.records || from > to) {
    throw new RangeError(`records [${from}, ${to}) are outside a bucket of ${bucket.records}`)
  }
  const out: Uint8Array[] = []
  for (let start = from; start < to; ) {
    const k = index.fragments?.[start] ?? 0
    let end = start + 1
    while (end < to && (index.fragments?.[end] ?? 0) === k) end++
    const fragment = k === 0 ? bucket.fields[field.name] : bucket.fields[`${field.name}/${fragmentPart(k)}`]
    if (fragment === undefined) {
      throw new CorruptFieldObjectError(field.name, `${field.name}/index`, `its fragment ${k} is missing`)
    }
    const first = Number(index.offsets[start]!)
    const last = Number(index.offsets[end - 1]!) + index.lengths[end - 1]!
    const bytes = await store.getRange(fragment.cid, { ...options, offset: first, length: last - first })
    for (let r = start; r < end; r++) {
      const at = Number(index.offsets[r]!) - first
      const value = bytes.subarray(at, at + index.lengths[r]!)
      const digest = createHash('sha256').update(value).digest()
      const expected = index.sha256.subarray(r * 32, r * 32 + 32)
      if (!digest.equals(expected)) {
        throw new ObjectIntegrityError(
          `${fragment.cid}[${Number(index.offsets[r]!)}..${Number(index.offsets[r]!) + value.length})`,
          Buffer.from(expected).toString('hex'),
          digest.toString('hex'),
          store.url,
        )
      }
      out.push(value)
    }
    start = end
  }
  return out
}
