import { InvalidOptionError } from './errors.js'
import { MAX_BITS, type Metric, MIN_BITS, paddedDimOf, type VectorCompressor } from './model.js'
import { ROTATION_ROUNDS, rotationSigns } from './rotation.js'
import { checkDim, checkInteger, checkMetric } from './vectors.js'

export interface CompressorOptions {
  dim: number
  metric: Metric
  /**
   * Total bits per dimension: 1 stores sign bits only (rerank on full vectors for high
   * recall); 2..8 add extended-RaBitQ bits (about 90%, 95%, 99% recall@10 without rerank at
   * 4, 5, 7 bits on real data, as published).
   * @default 1
   */
  bits?: number
  /** Seed of the random rotation. @default 0 */
  seed?: number
}

/**
 * A RaBitQ compressor: a seeded rotation of vectors padded to a multiple of 64 dimensions,
 * and `bits` per dimension. Cheap and deterministic: the same options give the same object
 * (and CID).
 *
 * @example
 * ```ts
 * const compressor = createCompressor({ dim: 768, metric: 'cosine', bits: 4 })
 * ```
 */
export function createCompressor(options: CompressorOptions): VectorCompressor {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError('options', options, 'must be { dim, metric, bits?, seed? }')
  }
  const dim = checkDim(options.dim)
  const metric = checkMetric(options.metric)
  const bits = checkInteger('bits', options.bits ?? 1, MIN_BITS, MAX_BITS)
  const seed = checkInteger('seed', options.seed ?? 0, 0, 0xffffffff)
  const paddedDim = paddedDimOf(dim)
  return {
    kind: 'rabitq',
    dim,
    paddedDim,
    metric,
    bits,
    rotation: {
      kind: 'fht-kac',
      seed,
      rounds: ROTATION_ROUNDS,
      signs: rotationSigns(seed, paddedDim, ROTATION_ROUNDS),
    },
  }
}
