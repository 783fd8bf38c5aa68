/**
 * The iteration plan: which records an epoch visits, in what order, and which of them each
 * (rank, worker) partition yields. Computed from metadata alone (bucket record counts), so
 * every process derives the same plan without talking to the others.
 *
 * Order: with a shuffle seed, buckets are permuted (seeded by seed, epoch and manifest),
 * grouped into windows of consecutive buckets, and the records inside each window are
 * permuted again: a two-level shuffle whose memory is one window. Without a seed, records
 * come in append order.
 *
 * Partitioning: the epoch's records, in that order, are cut into batches of `batchSize`;
 * partition p of P (p = rank * numWorkers + worker) takes a contiguous run of those
 * batches, so every record is yielded exactly once per epoch across all partitions. Runs
 * differ in length by at most one batch; the shorter ones end with an empty batch, so
 * every partition, and every rank, steps the same number of times without repeating or
 * dropping a record.
 */
import { createHash } from 'node:crypto'
import type { Bucket } from '@dreamdb/manifest'

export interface PlannedBucket {
  /** Position in the timeline. */
  position: number
  bucket: Bucket
}

export interface Window {
  buckets: PlannedBucket[]
  records: number
  /** Offset of the window's first record in the epoch's order. */
  start: number
  /** Seed of the in-window permutation; `null` keeps append order. */
  seed: number | null
}

export interface Plan {
  windows: Window[]
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

export function buildPlan(buckets: PlannedBucket[], options: PlanOptions): Plan {
  const { shuffleSeed, epoch, manifest } = options
  const ordered =
    shuffleSeed === null
      ? buckets
      : Array.from(
          permutation(buckets.length, derivedSeed(shuffleSeed, epoch, manifest, 'buckets')),
          (i) => buckets[i]!,
        )
  const windows: Window[] = []
  let current: Window | undefined
  let start = 0
  for (const planned of ordered) {
    if (current === undefined || (shuffleSeed === null ? true : current.records >= options.windowRecords)) {
      current = {
        buckets: [],
        records: 0,
        start,
        seed:
          shuffleSeed === null ? null : derivedSeed(shuffleSeed, epoch, manifest, 'window', windows.length),
      }
      windows.push(current)
    }
    current.buckets.push(planned)
    current.records += planned.bucket.records
    start += planned.bucket.records
  }
  const records = start
  const batches = Math.ceil(records / options.batchSize)
  const { partition, partitions } = options
  const firstBatch = Math.floor((batches * partition) / partitions)
  const endBatch = Math.floor((batches * (partition + 1)) / partitions)
  return {
    windows,
    records,
    batches,
    batchesPerPartition: Math.ceil(batches / partitions),
    firstBatch,
    endBatch,
  }
}
