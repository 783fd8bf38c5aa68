/**
 * Layer segments: a layer's values keyed by anchor. A plain segment is one Arrow IPC stream
 * of `_anchor` (Uint64) and the layer's column, encoded in one pass from the validated
 * values; a compressed embedding layer keeps its codes (and full vectors, with rerank) as a
 * bucket does, and its anchors beside them in `<field>/anchors`.
 */
import type { AbortOptions, Store } from '@dreamdb/cas'
import type { Bucket, Field, FieldObject } from '@dreamdb/manifest'
import { Table as ArrowTable, tableFromIPC, tableToIPC, type Vector } from 'apache-arrow'
import { type EncodedBucket, putEncodedBucket } from './buckets.js'
import {
  anchorColumn,
  arrowTypeOf,
  type Codecs,
  decodeField,
  encodeField,
  isCompressed,
  keysToRead,
  valuesColumn,
} from './columns.js'
import { CorruptFieldObjectError, InvalidValueError } from './errors.js'

/** Encode and store a layer segment: values keyed by anchor (scalar and embedding layers). */
export async function writeLayerSegment(
  store: Store,
  field: Field,
  anchors: readonly bigint[],
  values: readonly unknown[],
  options: AbortOptions & { codecs?: Codecs } = {},
): Promise<{ records: number; anchorMin: bigint; anchorMax: bigint; fields: Record<string, FieldObject> }> {
  if (field.family === 'binary') throw new InvalidValueError(field.name, 0, 'binary layers are not supported')
  if (field.family !== 'scalar' && field.family !== 'embedding') arrowTypeOf(field) // InvalidFieldError
  if (anchors.length === 0 || anchors.length !== values.length) {
    throw new InvalidValueError(field.name, 0, `${anchors.length} anchors for ${values.length} values`)
  }
  const anchorVector = anchorColumn(BigUint64Array.from(anchors))
  let objects: EncodedBucket
  if (isCompressed(field)) {
    const encoded = encodeField(field, values, options.codecs)
    objects = [
      [field.name, encoded.main],
      [`${field.name}/anchors`, tableToIPC(new ArrowTable({ _anchor: anchorVector }), 'stream')],
      ...Object.entries(encoded.parts).map(
        ([part, bytes]) => [`${field.name}/${part}`, bytes] as [string, Uint8Array],
      ),
    ]
  } else {
    // The column as validated goes straight into the segment's table: the bytes are those a
    // round trip through the field's own IPC stream gave (pinned in test/formats.test.ts).
    const table = new ArrowTable({ _anchor: anchorVector, [field.name]: valuesColumn(field, values) })
    objects = [[field.name, tableToIPC(table, 'stream')]]
  }
  let anchorMin = anchors[0]!
  let anchorMax = anchors[0]!
  for (const a of anchors) {
    if (a < anchorMin) anchorMin = a
    if (a > anchorMax) anchorMax = a
  }
  const fields = await putEncodedBucket(store, objects, options)
  return { records: anchors.length, anchorMin, anchorMax, fields }
}

/** A layer segment's anchors and values; a compressed layer's vectors decoded with its codec. */
export async function readLayerSegment(
  store: Store,
  field: Field,
  segment: Bucket,
  options: AbortOptions & { codecs?: Codecs } = {},
): Promise<{ anchors: BigUint64Array; values: Vector }> {
  const object = segment.fields[field.name]
  if (object === undefined) throw new RangeError(`segment has no object for layer '${field.name}'`)
  if (isCompressed(field)) {
    const anchorsObject = segment.fields[`${field.name}/anchors`]
    if (anchorsObject === undefined)
      throw new CorruptFieldObjectError(field.name, object.cid.toString(), 'the anchors part is missing')
    const keys = keysToRead(field, Object.keys(segment.fields))
    const read = async (key: string) => {
      const cid = segment.fields[key]!.cid
      return { cid: cid.toString(), bytes: await store.get(cid, options) }
    }
    const [anchorBytes, ...parts] = await Promise.all([read(`${field.name}/anchors`), ...keys.map(read)])
    const anchors = tableFromIPC(anchorBytes!.bytes).getChild('_anchor')
    if (anchors === null || anchors.length !== segment.records) {
      throw new CorruptFieldObjectError(field.name, anchorBytes!.cid, `expected ${segment.records} anchors`)
    }
    const byKey = Object.fromEntries(
      keys.map((k, i) => [k === field.name ? '' : k.slice(field.name.length + 1), parts[i]!]),
    )
    const { '': main, ...rest } = byKey
    const values = decodeField(field, segment.records, main, rest, options.codecs)
    return { anchors: anchors.toArray() as BigUint64Array, values }
  }
  const bytes = await store.get(object.cid, options)
  const table = tableFromIPC(bytes)
  const anchors = table.getChild('_anchor')
  const values = table.getChild(field.name)
  if (
    anchors === null ||
    values === null ||
    anchors.length !== segment.records ||
    values.length !== segment.records
  ) {
    throw new CorruptFieldObjectError(
      field.name,
      object.cid.toString(),
      `expected _anchor and ${field.name} for ${segment.records} records`,
    )
  }
  return { anchors: anchors.toArray() as BigUint64Array, values }
}
