import { checkCompatible, sharedCodec } from './codec.js'
import { readCodeBlock, writeCodeBlock } from './codes.js'
import type { SpatialIndex, VectorCompressor } from './model.js'
import { toMatrix, type VectorsInput } from './vectors.js'

/**
 * Encode vectors into a code block (the byte format in the README): each vector is
 * assigned to its nearest list of `spatialIndex` and compressed by `compressor`. This is
 * what a bucket of an embedding field stores; `VectorIndex.addCodes` and `decodeCodes`
 * read it back.
 *
 * @example
 * ```ts
 * const block = encodeCodes(spatialIndex, compressor, vectors)
 * ```
 */
export function encodeCodes(
  spatialIndex: SpatialIndex,
  compressor: VectorCompressor,
  vectors: VectorsInput,
): Uint8Array {
  checkCompatible(spatialIndex, compressor)
  const data = toMatrix(vectors, compressor.dim, compressor.metric, 'vector')
  const rows = sharedCodec(spatialIndex, compressor).encode(data, data.length / compressor.dim)
  return writeCodeBlock(spatialIndex, compressor, rows)
}

/**
 * Approximate the vectors of a code block (row-major, `count * dim`), for reading an
 * embedding field whose full vectors were not kept. Each is c + |o - c| <ō, o> ō: the
 * centroid plus the residual's code direction, shrunk by the code's cosine with the true
 * residual (the least-error point given the code). Under cosine the vectors are unit length
 * approximations of the normalised input.
 */
export function decodeCodes(
  spatialIndex: SpatialIndex,
  compressor: VectorCompressor,
  block: Uint8Array,
): Float32Array {
  checkCompatible(spatialIndex, compressor)
  const rows = readCodeBlock(spatialIndex, compressor, block)
  return sharedCodec(spatialIndex, compressor).decode(rows)
}
