/**
 * The distance vectors are compared with: squared Euclidean (`l2`), negative inner product
 * (`ip`) or one minus cosine similarity (`cosine`). The vector layer owns this concept; the
 * manifest's schema names the same three values for an embedding field.
 */
export type Metric = 'l2' | 'ip' | 'cosine'

export const METRICS: readonly Metric[] = ['l2', 'ip', 'cosine']

/** The largest dimension accepted (padded codes must keep every integer sum below 2^31). */
export const MAX_DIM = 16384
/** Total bits per dimension a compressor may use: 1 sign bit plus 0..7 extra bits. */
export const MIN_BITS = 1
export const MAX_BITS = 8
/**
 * Default confidence of the error bound (in standard deviations): the estimate is off by more
 * than the bound for under 0.1% of pairs (measured 0.02-0.07% on Fashion-MNIST and clustered
 * synthetic data; 1.9, the value in the RaBitQ paper, leaves about 5% outside).
 */
export const DEFAULT_EPSILON0 = 3.5
/** Bits of the query for the one-bit FastScan pass (4-bit LUT entries). */
export const QUERY_BITS = 4
/** Bits of the query for the multi-bit estimate. */
export const EX_QUERY_BITS = 8

/**
 * A trained IVF partition: `lists` centroids that every vector is assigned to (its nearest
 * under the metric). Plain data; store it with `saveSpatialIndex`.
 */
export interface SpatialIndex {
  readonly kind: 'ivf'
  readonly dim: number
  readonly metric: Metric
  readonly lists: number
  /**
   * `lists * dim` float32, row-major. Unit length under `ip` and `cosine` (spherical
   * k-means: vectors go to the centroid of largest inner product).
   */
  readonly centroids: Float32Array
  /** How it was trained, for the record. */
  readonly training: {
    readonly seed: number
    readonly iterations: number
    /** Vectors k-means ran on (a sample of at most `maxPointsPerList * lists`). */
    readonly samples: number
    readonly maxPointsPerList: number
  }
}

/**
 * A RaBitQ vector compressor: a seeded random rotation of the zero-padded vector and a
 * `bits`-per-dimension code (1 = sign bits only; 2..8 = extended RaBitQ). Plain data; store
 * it with `saveCompressor`.
 */
export interface VectorCompressor {
  readonly kind: 'rabitq'
  readonly dim: number
  /** `dim` rounded up to a multiple of 64 (at least 64); codes have this many dimensions. */
  readonly paddedDim: number
  readonly metric: Metric
  /** Total bits per dimension, 1..8. */
  readonly bits: number
  readonly rotation: {
    /** Four rounds of sign flips, Walsh-Hadamard transform and a Kac's-walk step. */
    readonly kind: 'fht-kac'
    readonly seed: number
    readonly rounds: number
    /** `rounds * paddedDim` sign bits, LSB first: bit set = flip. */
    readonly signs: Uint8Array
  }
}

/** The distance of every result: smaller is closer under every metric. */
export function describeDistance(metric: Metric): string {
  switch (metric) {
    case 'l2':
      return 'squared Euclidean distance'
    case 'ip':
      return 'negative inner product'
    case 'cosine':
      return '1 - cosine similarity'
  }
}

export function paddedDimOf(dim: number): number {
  return Math.max(64, Math.ceil(dim / 64) * 64)
}
