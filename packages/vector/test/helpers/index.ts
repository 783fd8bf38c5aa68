import {
  createCompressor,
  createVectorIndex,
  type KernelChoice,
  trainSpatialIndex,
  type VectorIndex,
} from '../../src/index.js'
import type { EstimateVisitor } from '../../src/index-memory.js'
import { clustered, type Metric } from './data.js'

export interface Fixture {
  dim: number
  n: number
  base: Float32Array
  queries: Float32Array
  index: VectorIndex
}

/** A trained index over clustered data, plus held-out queries from the same distribution. */
export async function fixture(options: {
  dim: number
  n: number
  queries: number
  metric: Metric
  bits: number
  seed?: number
  lists?: number
  keepVectors?: boolean
  kernels?: KernelChoice
  offset?: number
}): Promise<Fixture> {
  const { dim, n, metric, bits } = options
  const all = clustered({ n: n + options.queries, dim, seed: options.seed ?? 1, offset: options.offset ?? 0 })
  const base = all.subarray(0, n * dim)
  const queries = all.subarray(n * dim)
  const spatialIndex = await trainSpatialIndex(base, {
    dim,
    metric,
    ...(options.lists === undefined ? {} : { lists: options.lists }),
  })
  const compressor = createCompressor({ dim, metric, bits })
  const index = createVectorIndex({
    spatialIndex,
    compressor,
    keepVectors: options.keepVectors ?? true,
    kernels: options.kernels ?? 'auto',
  })
  index.add(base)
  return { dim, n, base, queries, index }
}

/** Every vector's estimates for a query (the internal hook the search loop also runs). */
export function estimates(
  index: VectorIndex,
  query: Float32Array,
  epsilon0: number,
  visit: EstimateVisitor,
): void {
  ;(index as unknown as { estimates(q: Float32Array, e: number, v: EstimateVisitor): void }).estimates(
    query,
    epsilon0,
    visit,
  )
}
