/**
 * @packageDocumentation
 *
 * `@dreamdb/vector` is DreamDB's vector layer: an IVF spatial index (k-means lists), RaBitQ
 * and extended-RaBitQ compression (1 to 8 bits per dimension after a seeded random
 * rotation), an unbiased distance estimator with an error bound, search that reranks with
 * exact distances only where the bound says a vector can still make the top k, an exact
 * (brute-force) scan with top-k for vectors kept without an index, decoding of
 * codes back to approximate vectors, and kernels in WebAssembly SIMD (built from the
 * `kernels.wat` source in this package) with identical TypeScript twins.
 *
 * The trained spatial index and the compressor are content-addressed objects in a
 * `@dreamdb/cas` store (strict DAG-CBOR); codes are a documented byte format that the
 * arrow layer stores per bucket.
 *
 * @example
 * ```ts
 * import { openStore } from '@dreamdb/cas'
 * import {
 *   createCompressor, createVectorIndex, loadSpatialIndex, saveCompressor, saveSpatialIndex, trainSpatialIndex,
 * } from '@dreamdb/vector'
 *
 * const dim = 64
 * const vectors = Array.from({ length: 2000 }, () => Float32Array.from({ length: dim }, () => Math.random()))
 * const spatialIndex = await trainSpatialIndex(vectors, { dim, metric: 'l2' }) // ~sqrt(N) lists
 * const compressor = createCompressor({ dim, metric: 'l2', bits: 1 })
 *
 * const store = await openStore('memory://')
 * const indexCid = await saveSpatialIndex(store, spatialIndex) // goes into EmbeddingField.spatialIndex
 * const compressorCid = await saveCompressor(store, compressor) // EmbeddingField.compressor
 *
 * const index = createVectorIndex({ spatialIndex: await loadSpatialIndex(store, indexCid), compressor })
 * index.add(vectors) // ids 0n, 1n, ... unless given
 * const { ids, distances } = index.search(vectors[7]!, { k: 10, nprobe: 8 }) // ids[0] === 7n
 * ```
 */

export { listSizesOfCodes } from './codes.js'
export { type CompressorOptions, createCompressor } from './compressor.js'
export { decodeCodes, encodeCodes } from './encode.js'
export * from './errors.js'
export { createExactScan, type ExactHits, type ExactScan, type ExactScanOptions } from './exact.js'
export {
  type AddCodesOptions,
  type AddOptions,
  createVectorIndex,
  type IdsInput,
  type SearchManyResult,
  type SearchOptions,
  type SearchResult,
  type SearchStats,
  type VectorIndex,
  type VectorIndexInit,
} from './index-memory.js'
export { type TrainOptions, type TrainProgressEvent, trainSpatialIndex } from './ivf.js'
export { type KernelChoice, type KernelKind, wasmAvailable } from './kernels/kernels.js'
export type { Metric, SpatialIndex, VectorCompressor } from './model.js'
export {
  decodeCompressor,
  decodeSpatialIndex,
  encodeCompressor,
  encodeSpatialIndex,
  loadCompressor,
  loadSpatialIndex,
  saveCompressor,
  saveSpatialIndex,
} from './objects.js'
export type { VectorInput, VectorsInput } from './vectors.js'
