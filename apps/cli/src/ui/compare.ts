/**
 * The sweep comparison behind `/api/compare` and `/api/disagreements`: each ref's field as a
 * column of small integer codes (one code per distinct value), pairs compared as integers.
 *
 * Sweep branches of one dataset share its timeline: the same records in the same order. A
 * layer written over every record in timeline order (what a sweep writes) is then read as it
 * is stored, segment by segment, and its dictionary-encoded values become codes by their
 * integer keys (a value is decoded once per segment, not once per record; no per-record
 * object is made); the label is read once, straight from the timeline buckets' label objects,
 * all in parallel. Anything else (a layer over part of the records, or in another order, or
 * refs of different timelines) goes through the iterator or `compareRefs`, joined by anchor.
 */
import { readBucketColumns, readLayerSegment } from '@dreamdb/arrow'
import { compareRefs, type Dataset } from '@dreamdb/dataset'
import type { Bucket, Field, Layer, Manifest } from '@dreamdb/manifest'
import type { Data, Vector } from 'apache-arrow'
import pMap from 'p-map'
import { timelineAnchors } from './read.js'

export interface Comparison {
  refs: string[]
  manifests: string[]
  field: string
  label: string | null
  /** The records compared: their anchors, and their positions when every ref shares one timeline. */
  anchors: BigUint64Array
  positions: boolean
  /** The distinct values, by code. */
  dictionary: string[]
  /** Per ref, the code of its value for each record (-1: it has none). */
  codes: Int32Array[]
  /** Per ref, the code of the record's label in that ref's own state; null without a label. */
  labels: Int32Array[] | null
  matrix: { field: string; refs: string[]; agreement: number[][]; overlap: number[][]; counts: number[] }
  accuracy: (number | null)[]
  /** Records at least one ref has a value for. */
  records: number
}

/** A value as the string filters and comparisons use (categorical, int, bool alike). */
export const key = (v: unknown): string | null =>
  v === null || v === undefined
    ? null
    : typeof v === 'object'
      ? JSON.stringify([...(v as Iterable<number>)])
      : String(v)

type Keys = Int32Array | Uint32Array | Int16Array | Uint16Array | Int8Array | Uint8Array

function integerKeys(values: unknown): Keys | undefined {
  return values instanceof Int32Array ||
    values instanceof Uint32Array ||
    values instanceof Int16Array ||
    values instanceof Uint16Array ||
    values instanceof Int8Array ||
    values instanceof Uint8Array
    ? values
    : undefined
}

/** out[at + i] = map[keys[i]] for the n records: the hot loop, kept small and monomorphic. */
function translate(keys: Keys, map: Int32Array, out: Int32Array, at: number, n: number): void {
  for (let i = 0; i < n; i++) out[at + i] = map[keys[i]!]!
}

/** Records whose validity bit is clear get -1 (null). */
function clearNulls(data: Data, out: Int32Array, at: number): void {
  const bitmap = data.nullBitmap
  if (bitmap === undefined || bitmap.length === 0) return
  const offset = data.offset
  for (let i = 0; i < data.length; i++) {
    const bit = offset + i
    if (((bitmap[bit >> 3]! >> (bit & 7)) & 1) === 0) out[at + i] = -1
  }
}

/** Values as small integer codes: pairs compare integers, and a value is stored once. */
export class Codes {
  readonly dictionary: string[] = []
  readonly #codes = new Map<string, number>()

  of(value: unknown): number {
    const k = key(value)
    if (k === null) return -1
    let c = this.#codes.get(k)
    if (c === undefined) {
      c = this.dictionary.length
      this.dictionary.push(k)
      this.#codes.set(k, c)
    }
    return c
  }

  /**
   * A column's codes into `out` from `at`. Dictionary-encoded data (categorical values) is
   * coded once per dictionary entry and then by its integer keys: no string is decoded per
   * record.
   */
  column(vector: Vector, out: Int32Array, at: number): void {
    let base = 0
    for (const data of vector.data) {
      const keys = integerKeys(data.values)
      if (data.dictionary && keys) this.dictionaryInto(data, keys, out, at + base)
      else for (let i = 0; i < data.length; i++) out[at + base + i] = this.of(vector.get(base + i))
      base += data.length
    }
  }

  /** Dictionary-encoded data's codes into `out` from `at` (`out` may be `keys` itself). */
  dictionaryInto(data: Data, keys: Keys, out: Int32Array, at: number): void {
    const dictionary = data.dictionary!
    const map = new Int32Array(dictionary.length)
    for (let k = 0; k < dictionary.length; k++) map[k] = this.of(dictionary.get(k))
    translate(keys, map, out, at, data.length)
    if (data.nullCount > 0) clearNulls(data, out, at)
  }
}

/** How many records both columns have a value for (a code >= 0), and how many of those agree. */
export function agree(a: Int32Array, b: Int32Array): { both: number; same: number } {
  let both = 0
  let same = 0
  // Branch-free: the sign bit of x | y says whether either is null; runs agree on most
  // records, so a branch on either would be mispredicted often.
  for (let r = 0; r < a.length; r++) {
    const x = a[r]!
    const y = b[r]!
    const valid = ((x | y) >>> 31) ^ 1
    both += valid
    same += valid & ((x ^ y) === 0 ? 1 : 0)
  }
  return { both, same }
}

/** Records with a value (a code >= 0). */
function present(codes: Int32Array): number {
  let k = 0
  for (let r = 0; r < codes.length; r++) k += (codes[r]! >>> 31) ^ 1
  return k
}

/** Whether the anchors, concatenated, are exactly the timeline's anchors in order. */
export function inTimelineOrder(
  parts: readonly BigUint64Array[],
  ranges: readonly (readonly [bigint, number])[],
): boolean {
  let p = 0
  let offset = 0
  for (const [start, count] of ranges) {
    let done = 0
    while (done < count) {
      while (p < parts.length && offset === parts[p]!.length) {
        p++
        offset = 0
      }
      if (p === parts.length) return false
      const part = parts[p]!
      const m = Math.min(count - done, part.length - offset)
      if (!consecutive(part, offset, start + BigInt(done), m)) return false
      done += m
      offset += m
    }
  }
  while (p < parts.length && offset === parts[p]!.length) {
    p++
    offset = 0
  }
  return p === parts.length
}

/**
 * Whether anchors[from, from + count) are first, first + 1, ...: compared as 32-bit halves
 * (little-endian, as typed arrays are on every supported platform) held as int32, so the
 * loop makes no BigInt and no heap number.
 */
function consecutive(anchors: BigUint64Array, from: number, first: bigint, count: number): boolean {
  const words = new Int32Array(anchors.buffer, anchors.byteOffset + from * 8, count * 2)
  let low = Number(BigInt.asIntN(32, first))
  let high = Number(BigInt.asIntN(32, first >> 32n))
  for (let i = 0; i < words.length; i += 2) {
    if (words[i] !== low || words[i + 1] !== high) return false
    low = (low + 1) | 0
    if (low === 0) high = (high + 1) | 0
  }
  return true
}

/** The segments of a layer (metadata). */
async function layerSegments(ds: Dataset, layer: Layer, signal: AbortSignal): Promise<Bucket[]> {
  const out: Bucket[] = []
  for await (const { bucket } of ds.repository.buckets({ timeline: layer.segments } as Manifest, { signal }))
    out.push(bucket)
  return out
}

/** Reads of one comparison in flight at once: verifying one object overlaps reading the next. */
const CONCURRENCY = 8

/** A layer's segments as stored: their anchors and values. */
type Segments = { anchors: BigUint64Array; values: Vector }[]

/** A scalar layer over every record, read segment by segment; null when it is not one. */
async function readLayer(ds: Dataset, layer: Layer, signal: AbortSignal): Promise<Segments | null> {
  if (layer.field.family !== 'scalar' || layer.records !== ds.manifest.stats.records) return null
  const segments = await layerSegments(ds, layer, signal)
  return await pMap(segments, (s) => readLayerSegment(ds.store, layer.field, s, { signal }), {
    concurrency: CONCURRENCY,
    signal,
  })
}

/** Whether two layers hold the same anchors in the same segments (compared as bytes). */
function sameAnchorBytes(a: Segments, b: Segments): boolean {
  if (a.length !== b.length) return false
  return a.every((s, i) => {
    const x = s.anchors
    const y = b[i]!.anchors
    return (
      x.length === y.length &&
      Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(
        Buffer.from(y.buffer, y.byteOffset, y.byteLength),
      )
    )
  })
}

/**
 * The codes of a layer read as stored. A layer of one dictionary-encoded chunk is coded in
 * place: its integer keys become the codes, so a million records cost no new memory (on this
 * machine, touching fresh memory costs about as much as reading it). The bytes are this
 * comparison's own (read and verified for it), so nothing else sees the change.
 */
function segmentCodes(segments: Segments, n: number, codes: Codes): Int32Array {
  const only =
    segments.length === 1 && segments[0]!.values.data.length === 1 ? segments[0]!.values.data[0]! : null
  const keys = only?.dictionary ? only.values : undefined
  if (only !== null && keys instanceof Int32Array && keys.length >= only.length) {
    const column = keys.subarray(0, only.length)
    codes.dictionaryInto(only, column, column, 0)
    return column
  }
  const out = new Int32Array(n)
  let at = 0
  for (const s of segments) {
    codes.column(s.values, out, at)
    at += s.values.length
  }
  return out
}

/** A base field of the timeline as codes: each bucket's object of that field alone. */
async function baseColumn(
  ds: Dataset,
  field: Field,
  buckets: readonly Bucket[],
  signal: AbortSignal,
): Promise<(codes: Codes) => Int32Array> {
  const columns = await pMap(
    buckets,
    async (bucket) =>
      // A bucket written before the field existed has none: nulls.
      bucket.fields[field.name] === undefined
        ? { records: bucket.records, vector: undefined }
        : {
            records: bucket.records,
            vector: (await readBucketColumns(ds.store, [field], bucket, { signal }))[field.name],
          },
    { concurrency: CONCURRENCY, signal },
  )
  return (codes) => {
    const out = new Int32Array(ds.manifest.stats.records)
    let at = 0
    for (const { records, vector } of columns) {
      if (vector === undefined) out.fill(-1, at, at + records)
      else codes.column(vector, out, at)
      at += records
    }
    return out
  }
}

/** A field of any kind through the iterator (the general path). */
async function iteratedColumn(ds: Dataset, field: string, codes: Codes, signal: AbortSignal) {
  const out = new Int32Array(ds.manifest.stats.records).fill(-1)
  let at = 0
  for await (const batch of ds.iterArrowBatches({ fields: [field], batchSize: 65_536, signal })) {
    codes.column(batch.getChild(field)!, out, at)
    at += batch.numRows
  }
  return out
}

/** Every ref's `field` (and the label) compared pairwise. */
export async function computeComparison(
  refs: string[],
  states: Dataset[],
  field: string,
  label: string | null,
  signal: AbortSignal,
): Promise<Comparison> {
  const codes = new Codes()
  const manifests = states.map((d) => d.currentManifest())
  const timelines = new Set(states.map((d) => String(d.manifest.timeline)))
  let anchors: BigUint64Array
  let columns: Int32Array[]
  let labels: Int32Array[] | null = null
  const positions = timelines.size === 1
  if (positions) {
    // Sweep branches of one dataset: the same records in the same order, so each ref's values
    // are a column by position, and the label is read once; no join by anchor.
    const first = states[0]!
    const n = first.manifest.stats.records
    const buckets: Bucket[] = []
    for await (const { bucket } of first.repository.buckets(first.manifest, { signal })) buckets.push(bucket)
    const ranges = buckets.every((b) => b.anchorRanges !== null)
      ? buckets.flatMap((b) => b.anchorRanges!.map((r) => [r.start, r.count] as const))
      : null
    const labelField = label === null ? undefined : first.manifest.schema.fields.find((f) => f.name === label)
    const labelLayer = label === null ? undefined : first.manifest.layers.find((l) => l.name === label)
    const layerOf = (ds: Dataset, name: string) =>
      ranges === null ? undefined : ds.manifest.layers.find((l) => l.name === name)
    // Every object at once: reading and verifying one overlaps the next.
    const [read, labelRead] = await Promise.all([
      Promise.all(
        states.map((ds) => {
          const layer = layerOf(ds, field)
          return layer === undefined ? null : readLayer(ds, layer, signal)
        }),
      ),
      labelField !== undefined
        ? baseColumn(first, labelField, buckets, signal)
        : labelLayer !== undefined && ranges !== null
          ? readLayer(first, labelLayer, signal)
          : null,
    ])
    // A layer is used as stored when its anchors are the timeline's, in order: checked record
    // by record for the first, then by comparing bytes with it (sweep layers share them).
    let checked: Segments | undefined
    const inOrder = (segments: Segments | null): segments is Segments => {
      if (segments === null) return false
      if (checked !== undefined && sameAnchorBytes(segments, checked)) return true
      if (
        !inTimelineOrder(
          segments.map((s) => s.anchors),
          ranges!,
        )
      )
        return false
      checked ??= segments
      return true
    }
    columns = []
    for (const [i, ds] of states.entries()) {
      const segments = read[i]!
      columns.push(
        inOrder(segments) ? segmentCodes(segments, n, codes) : await iteratedColumn(ds, field, codes, signal),
      )
    }
    if (label !== null) {
      const column =
        typeof labelRead === 'function'
          ? labelRead(codes)
          : inOrder(labelRead)
            ? segmentCodes(labelRead, n, codes)
            : await iteratedColumn(first, label, codes, signal)
      labels = states.map(() => column)
    }
    anchors =
      checked === undefined
        ? await timelineAnchors(first, signal)
        : checked.length === 1
          ? checked[0]!.anchors
          : concat(
              checked.map((s) => s.anchors),
              n,
            )
  } else {
    // Refs of different records: joined by anchor (compareRefs), labels per timeline.
    const table = await compareRefs({ refs, fields: [field], backend: states[0]!.store, signal })
    anchors = table.getChild('_anchor')!.toArray() as BigUint64Array
    const codeColumn = (column: { get(i: number): unknown }, n: number) => {
      const out = new Int32Array(n)
      for (let i = 0; i < n; i++) out[i] = codes.of(column.get(i))
      return out
    }
    columns = refs.map((r) => codeColumn(table.getChild(`${field}@${r}`)!, table.numRows))
    if (label !== null) {
      const byTimeline = new Map<string, Int32Array>()
      labels = []
      for (const [r, ds] of states.entries()) {
        const t = String(ds.manifest.timeline)
        let column = byTimeline.get(t)
        if (column === undefined) {
          const found = new Map<bigint, number>()
          for await (const batch of ds.iterArrowBatches({ fields: [label], batchSize: 65_536, signal })) {
            const a = batch.getChild('_anchor')!
            const l = batch.getChild(label)!
            for (let i = 0; i < batch.numRows; i++) found.set(a.get(i) as bigint, codes.of(l.get(i)))
          }
          column = Int32Array.from(anchors, (a) => found.get(a) ?? -1)
          byTimeline.set(t, column)
        }
        labels[r] = column
      }
    }
  }
  return summarize(refs, manifests, field, label, anchors, positions, codes, columns, labels)
}

function concat(parts: BigUint64Array[], n: number): BigUint64Array {
  const out = new BigUint64Array(n)
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

function summarize(
  refs: string[],
  manifests: string[],
  field: string,
  label: string | null,
  anchors: BigUint64Array,
  positions: boolean,
  codes: Codes,
  columns: Int32Array[],
  labels: Int32Array[] | null,
): Comparison {
  const n = refs.length
  // Values per ref: the diagonal of the overlap, and what compare-refs counts.
  const counts = columns.map(present)
  const agreement = Array.from({ length: n }, (_, i) =>
    Array.from({ length: n }, (): number => (counts[i]! > 0 ? 1 : 0)),
  )
  const overlap = Array.from({ length: n }, (_, i) => Array.from({ length: n }, () => counts[i]!))
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const { both, same } = agree(columns[i]!, columns[j]!)
      overlap[i]![j] = overlap[j]![i] = both
      agreement[i]![j] = agreement[j]![i] = both === 0 ? 0 : same / both
    }
  }
  // Records at least one ref has a value for (as compareRefs counts them).
  const records = counts.includes(anchors.length) ? anchors.length : anyPresent(columns, anchors.length)
  const accuracy = columns.map((c, r) => {
    if (labels === null) return null
    const { both, same } = agree(c, labels[r]!)
    return both === 0 ? null : same / both
  })
  return {
    refs,
    manifests,
    field,
    label,
    anchors,
    positions,
    dictionary: codes.dictionary,
    codes: columns,
    labels,
    matrix: { field, refs, agreement, overlap, counts },
    accuracy,
    records,
  }
}

function anyPresent(columns: Int32Array[], n: number): number {
  const any = new Uint8Array(n)
  for (const c of columns) for (let r = 0; r < n; r++) any[r] = any[r]! | ((c[r]! >>> 31) ^ 1)
  let records = 0
  for (let r = 0; r < n; r++) records += any[r]!
  return records
}
