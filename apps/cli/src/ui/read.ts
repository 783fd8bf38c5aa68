/**
 * Reading parts of a state without reading all of it: records at positions (only the
 * windows that hold them), positions of anchors (from the timeline's bucket metadata, no
 * data object read), and a scan over a few columns that stops once it has enough.
 */
import type { Dataset } from '@dreamdb/dataset'
import type { Field } from '@dreamdb/manifest'
import type { RecordBatch } from 'apache-arrow'

/** Records per batch when reading records at scattered positions. */
const GROUP = 64

export interface Row {
  /** The record's place in the state's append order (0-based). */
  position: number
  anchor: bigint
  /** Raw Arrow values by field name. */
  values: Record<string, unknown>
}

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

/** The records in [offset, offset + limit), reading only the windows that hold them. */
export async function readRange(
  ds: Dataset,
  offset: number,
  limit: number,
  fields: string[],
  signal: AbortSignal,
): Promise<Row[]> {
  const total = ds.manifest.stats.records
  const end = Math.min(total, offset + limit)
  if (offset >= end) return []
  const first = Math.floor(offset / limit)
  const last = Math.floor((end - 1) / limit)
  const rows: Row[] = []
  let b = first
  for await (const batch of ds.iterArrowBatches({
    fields,
    batchSize: limit,
    batchRange: [first, last + 1],
    // Windows as small as a page: a page reads the buckets it needs, not 4 096 records' worth.
    shuffleWindow: limit,
    prefetch: last > first ? 1 : 0,
    signal,
  })) {
    rows.push(...rowsOf(batch, b * limit, (p) => p >= offset && p < end))
    b++
  }
  return rows
}

/** The records at these positions (any order, duplicates ignored), in position order. */
export async function readPositions(
  ds: Dataset,
  positions: readonly number[],
  fields: string[],
  signal: AbortSignal,
): Promise<Row[]> {
  const wanted = new Set(positions)
  const groups = [...new Set(positions.map((p) => Math.floor(p / GROUP)))].sort((a, b) => a - b)
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

/** Whether `part` equals `whole` from index `at` on, compared as 32-bit words (no BigInt made). */
export function sameAnchors(part: BigUint64Array, whole: BigUint64Array, at: number): boolean {
  if (at + part.length > whole.length) return false
  const x = new Uint32Array(part.buffer, part.byteOffset, part.length * 2)
  const y = new Uint32Array(whole.buffer, whole.byteOffset + at * 8, part.length * 2)
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false
  return true
}
