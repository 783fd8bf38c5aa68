/**
 * Reading parts of a state without reading all of it: records at positions (only the
 * objects of the buckets that hold them, and of images only the records' own bytes),
 * positions of anchors (from the timeline's bucket metadata, no data object read), and a
 * scan over a few columns that stops once it has enough.
 */
import {
  type FragmentIndex,
  isCompressed,
  readBinaryRange,
  readBucketColumns,
  readFragmentIndex,
} from '@dreamdb/arrow'
import type { Dataset } from '@dreamdb/dataset'
import type { Bucket, Field } from '@dreamdb/manifest'
import type { RecordBatch, Vector } from 'apache-arrow'
import { LRUCache } from 'lru-cache'
import pMap from 'p-map'

export interface Row {
  /** The record's place in the state's append order (0-based). */
  position: number
  anchor: bigint
  /** Raw Arrow values by field name. */
  values: Record<string, unknown>
}

/** Decoded objects by CID (columns, fragment indexes), bounded by their stored bytes. */
export type ObjectCache = LRUCache<string, Vector | FragmentIndex>

/** A cache for `readRows`: pages of the same bucket reuse its columns and its images' index. */
export function objectCache(maxBytes: number): ObjectCache {
  return new LRUCache<string, Vector | FragmentIndex>({ maxSize: maxBytes })
}

/** The records at these positions (any order, duplicates ignored), in position order. */
export async function readPositions(
  ds: Dataset,
  positions: readonly number[],
  fields: string[],
  signal: AbortSignal,
  cache?: ObjectCache,
): Promise<Row[]> {
  const sorted = [...new Set(positions)].sort((a, b) => a - b)
  return await readRows(ds, sorted, fields, signal, cache ?? objectCache(64 << 20))
}

/** The records in [offset, offset + limit). */
export async function readRange(
  ds: Dataset,
  offset: number,
  limit: number,
  fields: string[],
  signal: AbortSignal,
  cache?: ObjectCache,
): Promise<Row[]> {
  const end = Math.min(ds.manifest.stats.records, offset + limit)
  const positions = Array.from({ length: Math.max(0, end - offset) }, (_, i) => offset + i)
  return await readRows(ds, positions, fields, signal, cache ?? objectCache(64 << 20))
}

/** Buckets read at once for one request. */
const BUCKETS_AT_ONCE = 4

/**
 * Records at sorted, distinct positions, reading only what they need: a base field's object
 * of each bucket they lie in (decoded once into `cache`), and of a binary field only the
 * index and the records' own bytes (one ranged read per run of records, each record checked
 * against its digest), never a whole fragment. Layers and compressed embeddings go through the
 * iterator (a join by anchor, and codecs), for those fields only.
 */
async function readRows(
  ds: Dataset,
  positions: readonly number[],
  fields: string[],
  signal: AbortSignal,
  cache: ObjectCache,
): Promise<Row[]> {
  const schema = new Map(ds.manifest.schema.fields.map((f) => [f.name, f]))
  const direct = fields
    .map((n) => schema.get(n))
    .filter((f): f is Field => f !== undefined && !isCompressed(f))
  const others = fields.filter((n) => !direct.some((f) => f.name === n))
  const spans = await bucketsHolding(ds, positions, signal)
  const rows = (
    await pMap(spans, (span) => bucketRows(ds, span, direct, signal, cache), {
      concurrency: BUCKETS_AT_ONCE,
      signal,
    })
  ).flat()
  if (others.length > 0) {
    const byPosition = new Map(rows.map((r) => [r.position, r]))
    for (const row of await iteratedRows(ds, positions, others, signal)) {
      const into = byPosition.get(row.position)
      if (into !== undefined) Object.assign(into.values, row.values)
    }
  }
  // Values in the order the fields were asked for.
  for (const row of rows) row.values = Object.fromEntries(fields.map((n) => [n, row.values[n] ?? null]))
  return rows
}

interface Span {
  bucket: Bucket
  /** The position of the bucket's first record. */
  start: number
  /** Positions inside the bucket, relative to its start, ascending. */
  at: number[]
}

/** The buckets that hold sorted positions, from the timeline's summaries (no data read). */
async function bucketsHolding(
  ds: Dataset,
  positions: readonly number[],
  signal: AbortSignal,
): Promise<Span[]> {
  const spans: Span[] = []
  let i = 0
  let base = 0
  for await (const { leaf } of ds.repository.leaves(ds.manifest, { signal })) {
    if (i >= positions.length) break
    if (positions[i]! < base + leaf.records) {
      let start = base
      for (const bucket of await ds.repository.leafBuckets(leaf, { signal })) {
        const at: number[] = []
        while (i < positions.length && positions[i]! < start + bucket.records)
          at.push(positions[i++]! - start)
        if (at.length > 0) spans.push({ bucket, start, at })
        start += bucket.records
      }
    }
    base += leaf.records
  }
  return spans
}

/** The anchor of a bucket's record `i`, from its anchor ranges. */
function anchorAt(bucket: Bucket, i: number): bigint {
  let at = 0
  for (const range of bucket.anchorRanges ?? []) {
    if (i < at + range.count) return range.start + BigInt(i - at)
    at += range.count
  }
  throw new RangeError(`record ${i} is not in the bucket's anchor ranges`)
}

async function bucketRows(
  ds: Dataset,
  { bucket, start, at }: Span,
  fields: readonly Field[],
  signal: AbortSignal,
  cache: ObjectCache,
): Promise<Row[]> {
  const values: Record<string, (i: number) => unknown> = {}
  const present = fields.filter((f) => bucket.fields[f.name] !== undefined) // else: added later, null
  const keyOf = (f: Field) => bucket.fields[f.name]!.cid.toString()
  const columns = present.filter((f) => f.family !== 'binary')
  const missing = columns.filter((f) => !cache.has(keyOf(f)))
  if (missing.length > 0) {
    const read = await readBucketColumns(ds.store, missing, bucket, { signal })
    for (const f of missing) cache.set(keyOf(f), read[f.name]!, { size: bucket.fields[f.name]!.bytes || 1 })
  }
  for (const f of columns) {
    const column = cache.get(keyOf(f)) as Vector
    values[f.name] = (i) => column.get(i)
  }
  for (const f of present.filter((f) => f.family === 'binary')) {
    const indexObject = bucket.fields[`${f.name}/index`]!
    const indexKey = indexObject.cid.toString()
    let index = cache.get(indexKey) as FragmentIndex | undefined
    if (index === undefined) {
      index = await readFragmentIndex(ds.store, f, bucket, { signal })
      cache.set(indexKey, index, { size: indexObject.bytes || 1 })
    }
    const bytes = new Map<number, Uint8Array>()
    // One ranged read per run of consecutive records.
    for (let r = 0; r < at.length; ) {
      let end = r + 1
      while (end < at.length && at[end] === at[end - 1]! + 1) end++
      const run = await readBinaryRange(ds.store, f, bucket, index, at[r]!, at[end - 1]! + 1, { signal })
      for (const [k, b] of run.entries()) bytes.set(at[r]! + k, b)
      r = end
    }
    values[f.name] = (i) => bytes.get(i)
  }
  return at.map((i) => ({
    position: start + i,
    anchor: anchorAt(bucket, i),
    values: Object.fromEntries(Object.entries(values).map(([name, get]) => [name, get(i)])),
  }))
}

/** Records per batch when the iterator reads records at scattered positions. */
const GROUP = 64

function rowsOf(batch: RecordBatch, firstPosition: number, keep: (position: number) => boolean): Row[] {
  const names = batch.schema.fields.map((f) => f.name).filter((n) => n !== '_anchor')
  const anchors = batch.getChild('_anchor')!
  const columns = names.map((n) => batch.getChild(n)!)
  const rows: Row[] = []
  for (let i = 0; i < batch.numRows; i++) {
    const position = firstPosition + i
    if (!keep(position)) continue
    const values: Record<string, unknown> = {}
    names.forEach((name, c) => {
      values[name] = columns[c]!.get(i)
    })
    rows.push({ position, anchor: anchors.get(i) as bigint, values })
  }
  return rows
}

/** Records at sorted positions through the iterator (layers, compressed embeddings). */
async function iteratedRows(
  ds: Dataset,
  positions: readonly number[],
  fields: string[],
  signal: AbortSignal,
): Promise<Row[]> {
  const wanted = new Set(positions)
  const groups = [...new Set(positions.map((p) => Math.floor(p / GROUP)))]
  const rows: Row[] = []
  // Consecutive groups are read in one pass.
  for (let i = 0; i < groups.length; ) {
    let j = i
    while (j + 1 < groups.length && groups[j + 1] === groups[j]! + 1) j++
    const first = groups[i]!
    let b = first
    for await (const batch of ds.iterArrowBatches({
      fields,
      batchSize: GROUP,
      batchRange: [first, groups[j]! + 1],
      shuffleWindow: GROUP,
      prefetch: j > i ? 1 : 0,
      signal,
    })) {
      rows.push(...rowsOf(batch, b * GROUP, (p) => wanted.has(p)))
      b++
    }
    i = j + 1
  }
  return rows
}

/**
 * The positions of these anchors in the state, from the timeline's leaf summaries and the
 * buckets' anchor ranges: only the leaves whose anchor bounds hold one of them are read.
 */
export async function positionsOf(
  ds: Dataset,
  anchors: readonly bigint[],
  signal: AbortSignal,
): Promise<Map<bigint, number>> {
  const found = new Map<bigint, number>()
  if (anchors.length === 0) return found
  const sorted = [...new Set(anchors)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  const inside = (min: bigint, max: bigint) => sorted.some((a) => a >= min && a <= max)
  let base = 0
  for await (const { leaf } of ds.repository.leaves(ds.manifest, { signal })) {
    if (inside(leaf.anchorMin, leaf.anchorMax)) {
      let at = base
      for (const bucket of await ds.repository.leafBuckets(leaf, { signal })) {
        if (inside(bucket.anchorMin, bucket.anchorMax)) {
          let offset = at
          for (const range of bucket.anchorRanges ?? []) {
            for (const a of sorted) {
              if (a >= range.start && a < range.start + BigInt(range.count))
                found.set(a, offset + Number(a - range.start))
            }
            offset += range.count
          }
        }
        at += bucket.records
      }
      if (found.size === sorted.length) break
    }
    base += leaf.records
  }
  return found
}

/** A condition on one record's values. */
export type Predicate = (values: Record<string, unknown>) => boolean

export interface ScanResult {
  /** Positions that matched, in order, at most `want`. */
  positions: number[]
  /** Where a later scan continues (the position after the last one examined). */
  next: number
  /** Whether the scan reached the end of the state. */
  done: boolean
  scanned: number
}

/** Records per batch of a filtering scan: only the filter's columns are read. */
const SCAN_BATCH = 8192

/**
 * Positions from `from` on whose values (`fields` only) satisfy `match`, stopping after
 * `want` of them or after `budget` records examined: the caller pages with `next`.
 */
export async function scanPositions(
  ds: Dataset,
  from: number,
  want: number,
  fields: string[],
  match: Predicate,
  signal: AbortSignal,
  budget = Number.POSITIVE_INFINITY,
): Promise<ScanResult> {
  const total = ds.manifest.stats.records
  const positions: number[] = []
  let next = from
  if (from < total && want > 0) {
    const first = Math.floor(from / SCAN_BATCH)
    let b = first
    scan: for await (const batch of ds.iterArrowBatches({
      fields,
      batchSize: SCAN_BATCH,
      batchRange: [first, Math.ceil(total / SCAN_BATCH)],
      signal,
    })) {
      for (const row of rowsOf(batch, b * SCAN_BATCH, (p) => p >= from)) {
        next = row.position + 1
        if (match(row.values)) {
          positions.push(row.position)
          if (positions.length >= want) break scan
        }
        if (next - from >= budget) break scan
      }
      b++
    }
  }
  return { positions, next, done: next >= total, scanned: next - from }
}

/** Fields by name: base fields then layers. */
export function fieldMap(ds: Dataset): Map<string, Field> {
  return new Map([
    ...ds.manifest.schema.fields.map((f) => [f.name, f] as const),
    ...ds.manifest.layers.map((l) => [l.name, l.field] as const),
  ])
}

/**
 * The anchors of the records at positions [from, to) as runs [start, count], from the
 * buckets' anchor ranges (metadata only), at most `max` runs.
 */
export async function anchorRuns(
  ds: Dataset,
  from: number,
  to: number,
  signal: AbortSignal,
  max = 1000,
): Promise<{ runs: [string, number][]; truncated: boolean }> {
  const runs: [string, number][] = []
  let base = 0
  for await (const { leaf } of ds.repository.leaves(ds.manifest, { signal })) {
    if (base + leaf.records > from && base < to) {
      let at = base
      for (const bucket of await ds.repository.leafBuckets(leaf, { signal })) {
        for (const range of bucket.anchorRanges ?? []) {
          const lo = Math.max(from, at)
          const hi = Math.min(to, at + range.count)
          if (lo < hi) {
            if (runs.length >= max) return { runs, truncated: true }
            runs.push([(range.start + BigInt(lo - at)).toString(), hi - lo])
          }
          at += range.count
        }
      }
    }
    base += leaf.records
    if (base >= to) break
  }
  return { runs, truncated: false }
}

/** Every record's anchor in timeline order, from the buckets' anchor ranges (no data read). */
export async function timelineAnchors(ds: Dataset, signal: AbortSignal): Promise<BigUint64Array> {
  const out = new BigUint64Array(ds.manifest.stats.records)
  // Written as 32-bit words: a million anchors without a million BigInts.
  const words = new Uint32Array(out.buffer)
  const [low, high] = LITTLE_ENDIAN ? [0, 1] : [1, 0]
  let at = 0
  for await (const { bucket } of ds.repository.buckets(ds.manifest, { signal })) {
    for (const range of bucket.anchorRanges ?? []) {
      let lo = Number(range.start & 0xffffffffn)
      let hi = Number(range.start >> 32n)
      for (let k = 0; k < range.count; k++) {
        words[2 * (at + k) + low] = lo
        words[2 * (at + k) + high] = hi
        if (++lo === 2 ** 32) {
          lo = 0
          hi++
        }
      }
      at += range.count
    }
  }
  return out
}

const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1
