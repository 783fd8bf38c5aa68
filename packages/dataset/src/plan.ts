/**
 * The iteration plan: which records an epoch visits, in what order, and which of them each
 * (rank, worker) partition yields. Computed from metadata alone, so every process derives
 * the same plan without talking to the others, and without reading the timeline's leaves:
 * the plan is made of **units** (the timeline's leaves, up to 32 buckets each) whose record
 * counts come from the summaries their parent nodes keep.
 *
 * Order: with a shuffle seed, units are permuted (seeded by seed, epoch and manifest); when
 * a unit is reached, its buckets are permuted and grouped into windows of about
 * `windowRecords` records, and the records inside each window are permuted again: a
 * three-level shuffle whose memory is a few windows. Without a seed, records come in
 * append order.
 *
 * Partitioning: the epoch's records, in that order, are cut into batches of `batchSize`;
 * partition p of P (p = rank * numWorkers + worker) takes a contiguous run of batches, so
 * every record is yielded exactly once per epoch across all partitions. Runs differ in
 * length by at most one batch; the shorter ones end with an empty batch, so every
 * partition, and every rank, steps the same number of times without repeating or dropping
 * a record.
 */
import { createHash } from 'node:crypto'
import { type Bucket, IntegrityError } from '@dreamdb/manifest'
import type { CID } from 'multiformats/cid'

/** A leaf of the timeline, known by its summary until it is reached. */
export interface Unit {
  node: CID
  /** Records this epoch visits in the unit (after any time filter). */
  records: number
  /** Offset of the unit's first record in the epoch's order. */
  start: number
  /** Buckets already known (when a time filter needed them to count), else loaded later. */
  buckets?: Bucket[]
}

export interface Window {
  buckets: Bucket[]
  records: number
  /** Offset of the window's first record in the epoch's order. */
  start: number
  /** Seed of the in-window permutation; `null` keeps append order. */
  seed: number | null
}

export interface Plan {
  units: Unit[]
  records: number
  batches: number
  batchesPerPartition: number
  /** This partition's batches: [firstBatch, endBatch). */
  firstBatch: number
  endBatch: number
}

export interface PlanOptions {
  batchSize: number
  shuffleSeed: number | null
  epoch: number
  manifest: string
  partition: number
  partitions: number
  /** Records per shuffle window (rounded up to whole buckets). */
  windowRecords: number
}

/** A 32-bit seed derived from everything that must change the order. */
export function derivedSeed(...parts: (string | number)[]): number {
  return createHash('sha256').update(parts.join('\u0000')).digest().readUInt32LE(0)
}

/** mulberry32: small, fast, and good enough to shuffle with. */
export function random(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A Fisher-Yates permutation of 0..n-1. */
export function permutation(n: number, seed: number): Uint32Array {
  const out = new Uint32Array(n)
  for (let i = 0; i < n; i++) out[i] = i
  const next = random(seed)
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1))
    const t = out[i]!
    out[i] = out[j]!
    out[j] = t
  }
  return out
}

/**
 * The order of a shuffled window's records: its permutation (which records each batch
 * holds), with the records of each run put back in source order (window index order:
 * bucket by bucket, row by row). A run is the part of one batch inside the window (cut by
 * the epoch's batch grid), or of one `run` records on the epoch's grid when that is
 * shorter. A batch stays a uniformly random subset of its window and the batches come in
 * the same random order; only the order of rows inside a run is the source's. The read
 * thread then writes each run's rows at one advancing place while it reads the window's
 * bucket front to back, instead of moving every row from a random place (design/0005,
 * issue #13).
 */
export function windowOrder(
  records: number,
  seed: number,
  windowStart: number,
  batchSize: number,
  run = batchSize,
): Uint32Array {
  const order = permutation(records, seed)
  // Each record's run, then the records in index order, each at its run's next place: a
  // sort of every run in two passes (no comparison sort of 4 096 a batch).
  const runOf = new Uint32Array(records)
  const next: number[] = []
  for (let from = 0; from < records; ) {
    const at = windowStart + from
    const to = Math.min(records, from + batchSize - (at % batchSize), from + run - (at % run))
    for (let p = from; p < to; p++) runOf[order[p]!] = next.length
    next.push(from)
    from = to
  }
  for (let index = 0; index < records; index++) order[next[runOf[index]!]!++] = index
  return order
}

/** Order the units and give each its offset; cut the epoch into this partition's batches. */
export function buildPlan(units: Omit<Unit, 'start'>[], options: PlanOptions): Plan {
  const { shuffleSeed, epoch, manifest } = options
  const ordered =
    shuffleSeed === null
      ? units
      : Array.from(
          permutation(units.length, derivedSeed(shuffleSeed, epoch, manifest, 'units')),
          (i) => units[i]!,
        )
  let start = 0
  const placed = ordered.map((unit) => {
    const out = { ...unit, start }
    start += unit.records
    return out
  })
  const records = start
  const batches = Math.ceil(records / options.batchSize)
  const { partition, partitions } = options
  return {
    units: placed,
    records,
    batches,
    batchesPerPartition: Math.ceil(batches / partitions),
    firstBatch: Math.floor((batches * partition) / partitions),
    endBatch: Math.floor((batches * (partition + 1)) / partitions),
  }
}

/** The windows of one unit, in the epoch's order, once its buckets are known. */
export function windowsOf(unit: Unit, buckets: Bucket[], options: PlanOptions): Window[] {
  const { shuffleSeed, epoch, manifest } = options
  const key = unit.node.toString()
  const ordered =
    shuffleSeed === null
      ? buckets
      : Array.from(
          permutation(buckets.length, derivedSeed(shuffleSeed, epoch, manifest, 'buckets', key)),
          (i) => buckets[i]!,
        )
  const windows: Window[] = []
  let current: Window | undefined
  let start = unit.start
  for (const bucket of ordered) {
    if (current === undefined || current.records >= options.windowRecords) {
      current = {
        buckets: [],
        records: 0,
        start,
        seed:
          shuffleSeed === null
            ? null
            : derivedSeed(shuffleSeed, epoch, manifest, 'window', key, windows.length),
      }
      windows.push(current)
    }
    current.buckets.push(bucket)
    current.records += bucket.records
    start += bucket.records
  }
  if (start - unit.start !== unit.records) {
    throw new IntegrityError(
      'Timeline node',
      key,
      'its buckets hold another number of records than its parent summary says',
      unit.records,
      start - unit.start,
    )
  }
  return windows
}
