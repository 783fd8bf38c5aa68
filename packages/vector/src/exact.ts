/**
 * Exact (brute-force) nearest-neighbour search: every distance computed in full, the k
 * nearest kept in the layer's one heap (`heap.ts`), so memory stays O(k) whatever the number
 * of vectors scanned. It serves float32 fields, which have no spatial index to probe.
 */
import { InvalidOptionError, NonFiniteValueError, ZeroVectorError } from './errors.js'
import { Heap } from './heap.js'
import type { Metric } from './model.js'
import { checkDim, checkMetric, checkQuery, type VectorInput } from './vectors.js'

export interface ExactScanOptions {
  dim: number
  metric: Metric
  /** How many nearest to keep. More than are offered keeps them all. */
  k: number
  /** Only ids for which this returns true can be results. */
  filter?: (id: bigint) => boolean
}

export interface ExactHits {
  /** Ids, closest first; equal distances keep the smaller id first. */
  ids: BigUint64Array
  /**
   * Exact distances, smaller is closer: squared Euclidean (l2), negative inner product (ip)
   * or 1 - cosine similarity (cosine).
   */
  distances: Float32Array
}

/** A scan in progress: offer blocks of vectors, then take the k nearest. */
export interface ExactScan {
  /**
   * Offer a block of `ids.length` row-major vectors (`ids.length * dim` values, e.g. one
   * Arrow batch of a FixedSizeList<Float32> column). A non-finite component is refused;
   * under cosine a zero vector is at distance 1.
   */
  add(vectors: Float32Array, ids: BigUint64Array): void
  /** The k nearest offered, closest first. It ends the scan: a second call returns nothing. */
  result(): ExactHits
}

/**
 * Start an exact scan for `query`. Distances accumulate in float64 from the float32 values
 * and the query as given (not rounded to float32), then are reported as float32; the k
 * nearest are ranked by (distance, id), so a scan's result does not depend on the order
 * the blocks came in.
 *
 * @example
 * ```ts
 * const scan = createExactScan(query, { dim: 512, metric: 'cosine', k: 10 })
 * for await (const batch of batches) scan.add(vectorsOf(batch), idsOf(batch))
 * const { ids, distances } = scan.result()
 * ```
 */
export function createExactScan(query: VectorInput, options: ExactScanOptions): ExactScan {
  const dim = checkDim(options?.dim)
  const metric = checkMetric(options.metric)
  const { k, filter } = options
  if (typeof k !== 'number' || !Number.isSafeInteger(k) || k < 1)
    throw new InvalidOptionError('k', k, 'must be an integer >= 1')
  const q = checkQuery(query, dim)
  let qnorm = 0
  for (let d = 0; d < dim; d++) qnorm += q[d]! * q[d]!
  qnorm = Math.sqrt(qnorm)
  if (metric === 'cosine' && qnorm === 0) throw new ZeroVectorError('query', 0)
  // A max heap of (distance, id high word, id low word): its top is the k-th nearest so far.
  // Room grows as entries come, so a k above the number of vectors costs only what is offered.
  const top = new Heap('max', k, Math.min(k, 1 << 16))
  let offered = 0
  return {
    add(vectors, ids) {
      if (!(vectors instanceof Float32Array) || vectors.length !== ids.length * dim)
        throw new InvalidOptionError(
          'vectors',
          vectors instanceof Float32Array ? `${vectors.length} values` : typeof vectors,
          `must be a Float32Array of ids.length * dim = ${ids.length * dim} values`,
        )
      for (let r = 0; r < ids.length; r++) {
        const id = ids[r]!
        if (filter !== undefined && !filter(id)) continue
        const base = r * dim
        let distance: number
        if (metric === 'l2') {
          let sum = 0
          for (let d = 0; d < dim; d++) {
            const diff = vectors[base + d]! - q[d]!
            sum += diff * diff
          }
          distance = sum
        } else {
          let dot = 0
          let norm = 0
          for (let d = 0; d < dim; d++) {
            const x = vectors[base + d]!
            dot += x * q[d]!
            norm += x * x
          }
          // A stored zero vector has no direction: distance 1 (similarity 0), not a refusal,
          // so one such record does not make a whole field unsearchable.
          distance = metric === 'ip' ? -dot : norm === 0 ? 1 : 1 - dot / (Math.sqrt(norm) * qnorm)
        }
        if (Number.isNaN(distance)) throw notANumber(vectors, base, dim, offered + r)
        top.offer(distance, Number(id >> 32n), Number(id & 0xffffffffn))
      }
      offered += ids.length
    },
    result() {
      const n = top.size
      const out: ExactHits = { ids: new BigUint64Array(n), distances: new Float32Array(n) }
      // The heap's top is the farthest kept: fill from the back.
      for (let i = n - 1; i >= 0; i--) {
        out.ids[i] = (BigInt(top.topA) << 32n) | BigInt(top.topB)
        out.distances[i] = top.topKey
        top.pop()
      }
      return out
    },
  }
}

/** The error for a row whose distance is NaN: its first non-finite component. */
function notANumber(vectors: Float32Array, base: number, dim: number, index: number): Error {
  for (let d = 0; d < dim; d++) {
    const v = vectors[base + d]!
    if (!Number.isFinite(v)) return new NonFiniteValueError('vector', index, d, v)
  }
  // Finite values whose products overflow float64 (a query with components near 1e154).
  return new InvalidOptionError('query', 'a vector', 'has components too large for float64 distances')
}
