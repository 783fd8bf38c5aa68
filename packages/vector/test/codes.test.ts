import { describe, expect, it } from 'vitest'
import { Codec, emptyRows } from '../src/codec.js'
import { CODE_BLOCK_HEADER_BYTES, codeBlockBytes } from '../src/codes.js'
import {
  createCompressor,
  createVectorIndex,
  decodeCodes,
  encodeCodes,
  listSizesOfCodes,
  type Metric,
  trainSpatialIndex,
} from '../src/index.js'
import { toMatrix } from '../src/vectors.js'
import { clustered, row } from './helpers/data.js'

async function setup(metric: Metric, bits: number, dim = 40) {
  const data = clustered({ n: 500, dim, seed: 6 })
  const spatialIndex = await trainSpatialIndex(data, { dim, metric, lists: 12 })
  const compressor = createCompressor({ dim, metric, bits })
  return { dim, data, spatialIndex, compressor }
}

function relativeError(a: Float32Array, b: Float32Array, dim: number, normalize: boolean): number {
  let err = 0
  let ref = 0
  for (let i = 0; i < a.length / dim; i++) {
    let n = 1
    if (normalize) {
      n = 0
      for (let j = 0; j < dim; j++) n += b[i * dim + j]! ** 2
      n = Math.sqrt(n)
    }
    for (let j = 0; j < dim; j++) {
      err += (a[i * dim + j]! - b[i * dim + j]! / n) ** 2
      ref += (b[i * dim + j]! / n) ** 2
    }
  }
  return Math.sqrt(err / ref)
}

describe('code blocks', () => {
  it('have the documented size and header', async () => {
    const { spatialIndex, compressor, data } = await setup('ip', 3)
    const block = encodeCodes(spatialIndex, compressor, data.subarray(0, 10 * 40))
    // 40-byte header, 4 bytes of list, 4 factor columns (norm, x0, radial, x0ex), 3 bits x 64 dims
    expect(block.length).toBe(CODE_BLOCK_HEADER_BYTES + 10 * 4 + 10 * 4 * 4 + (10 * 3 * 64) / 8)
    expect(block.length).toBe(codeBlockBytes(compressor, 10))
    expect(new TextDecoder().decode(block.subarray(0, 4))).toBe('DVRQ')
    expect(block[4]).toBe(1)
    expect(block[5]).toBe(3)
    expect(block[6]).toBe(1)
    const view = new DataView(block.buffer)
    expect(view.getUint32(8, true)).toBe(40)
    expect(view.getUint32(12, true)).toBe(64)
    expect(view.getUint32(16, true)).toBe(10)
    expect(view.getUint32(20, true)).toBe(12)
    expect(encodeCodes(spatialIndex, compressor, data.subarray(0, 10 * 40))).toEqual(block)
  })

  it('encoded a block of rows at a time are the codes of one row at a time, with WASM and TypeScript kernels', async () => {
    for (const metric of ['l2', 'cosine'] as const) {
      const { dim, spatialIndex, compressor, data } = await setup(metric, 2)
      const count = 203 // blocks of 64 and a tail of 11, all 12 lists
      for (const kernels of ['wasm', 'js'] as const) {
        const codec = new Codec(spatialIndex, compressor, kernels)
        const rows = toMatrix(data.subarray(0, count * dim), dim, metric, 'vector')
        const blocked = codec.encode(rows, count)
        const single = emptyRows(count, compressor.paddedDim, compressor.bits)
        for (let i = 0; i < count; i++) codec.encodeRow(rows, i * dim, i, single)
        expect(new Set(blocked.lists).size).toBe(12)
        expect(blocked).toEqual(single)
      }
    }
  })

  it('added with addCodes search exactly like vectors added with add', async () => {
    for (const metric of ['l2', 'ip', 'cosine'] as const) {
      const { dim, spatialIndex, compressor, data } = await setup(metric, 2)
      const a = createVectorIndex({ spatialIndex, compressor })
      a.add(data)
      const b = createVectorIndex({ spatialIndex, compressor })
      b.addCodes(encodeCodes(spatialIndex, compressor, data.subarray(0, 200 * dim)), {
        vectors: data.subarray(0, 200 * dim),
      })
      b.addCodes(encodeCodes(spatialIndex, compressor, data.subarray(200 * dim)), {
        vectors: data.subarray(200 * dim),
      })
      for (const rerank of [true, false]) {
        for (const qi of [0, 33, 499]) {
          expect(b.search(row(data, dim, qi), { k: 8, nprobe: 4, rerank })).toEqual(
            a.search(row(data, dim, qi), { k: 8, nprobe: 4, rerank }),
          )
        }
      }
    }
  })

  it('sized up front from their list columns, search exactly as an index that grew', async () => {
    for (const metric of ['l2', 'cosine'] as const) {
      const { dim, spatialIndex, compressor, data } = await setup(metric, 2)
      const blocks = [0, 150, 420].map((from, i, all) =>
        encodeCodes(spatialIndex, compressor, data.subarray(from * dim, (all[i + 1] ?? 500) * dim)),
      )
      const grown = createVectorIndex({ spatialIndex, compressor })
      grown.add(data)
      const sizes = listSizesOfCodes(spatialIndex, compressor, blocks)
      expect(sizes).toEqual(grown.listSizes())
      const sized = createVectorIndex({ spatialIndex, compressor, listCapacity: sizes })
      const before = data.slice()
      ;[0, 150, 420].forEach((from, i, all) => {
        sized.addCodes(blocks[i]!, { vectors: data.subarray(from * dim, (all[i + 1] ?? 500) * dim) })
      })
      // The vectors are checked and scaled (cosine) in the index, never in the caller's array.
      expect(data).toEqual(before)
      for (const rerank of [true, false]) {
        for (const qi of [0, 33, 499]) {
          expect(sized.search(row(data, dim, qi), { k: 8, nprobe: 4, rerank })).toEqual(
            grown.search(row(data, dim, qi), { k: 8, nprobe: 4, rerank }),
          )
        }
      }
    }
  })

  it('refuse non-finite vectors given with them, and a list capacity per list', async () => {
    const { dim, spatialIndex, compressor, data } = await setup('cosine', 1)
    const block = encodeCodes(spatialIndex, compressor, data.subarray(0, 10 * dim))
    const vectors = data.slice(0, 10 * dim)
    vectors[3 * dim + 5] = Number.NaN
    expect(() => createVectorIndex({ spatialIndex, compressor }).addCodes(block, { vectors })).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_NOT_FINITE' }),
    )
    vectors.fill(0, 3 * dim, 4 * dim)
    expect(() => createVectorIndex({ spatialIndex, compressor }).addCodes(block, { vectors })).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_ZERO_VECTOR' }),
    )
    expect(() => createVectorIndex({ spatialIndex, compressor, listCapacity: [1, 2] })).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_INVALID_OPTION' }),
    )
  })

  it('decode to approximations whose error shrinks with more bits', async () => {
    for (const metric of ['l2', 'cosine'] as const) {
      const errors: number[] = []
      for (const bits of [1, 2, 4, 8]) {
        const { dim, spatialIndex, compressor, data } = await setup(metric, bits, 50)
        const decoded = decodeCodes(spatialIndex, compressor, encodeCodes(spatialIndex, compressor, data))
        expect(decoded.length).toBe(data.length)
        errors.push(relativeError(decoded, data, dim, metric === 'cosine'))
      }
      expect(errors[0]).toBeLessThan(0.5)
      for (let i = 1; i < errors.length; i++) expect(errors[i]!).toBeLessThan(errors[i - 1]!)
      expect(errors[3]).toBeLessThan(0.02)
    }
  })

  it('are refused against another spatial index or compressor, and when damaged', async () => {
    const { spatialIndex, compressor, data } = await setup('l2', 1)
    const block = encodeCodes(spatialIndex, compressor, data.subarray(0, 40 * 5))
    const otherCompressor = createCompressor({ dim: 40, metric: 'l2', seed: 1 })
    expect(() => decodeCodes(spatialIndex, otherCompressor, block)).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_INCOMPATIBLE' }),
    )
    const otherIndex = await trainSpatialIndex(data, { dim: 40, metric: 'l2', lists: 12, seed: 9 })
    expect(() => decodeCodes(otherIndex, compressor, block)).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_INCOMPATIBLE' }),
    )
    expect(() =>
      decodeCodes(spatialIndex, createCompressor({ dim: 40, metric: 'l2', bits: 2 }), block),
    ).toThrow(/bits/)
    expect(() => decodeCodes(spatialIndex, compressor, block.subarray(0, block.length - 1))).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_CORRUPT' }),
    )
    expect(() => decodeCodes(spatialIndex, compressor, block.subarray(0, 10))).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_CORRUPT' }),
    )
    const badMagic = block.slice()
    badMagic[0] = 0
    expect(() => decodeCodes(spatialIndex, compressor, badMagic)).toThrow(/DVRQ/)
    const newer = block.slice()
    newer[4] = 2
    expect(() => decodeCodes(spatialIndex, compressor, newer)).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_UNSUPPORTED_VERSION' }),
    )
    const badList = block.slice()
    new DataView(badList.buffer).setUint32(CODE_BLOCK_HEADER_BYTES, 12, true)
    expect(() => decodeCodes(spatialIndex, compressor, badList)).toThrow(/list 12 of 12/)
    const badFactor = block.slice()
    new DataView(badFactor.buffer).setFloat32(CODE_BLOCK_HEADER_BYTES + 5 * 4, Number.NaN, true)
    expect(() => decodeCodes(spatialIndex, compressor, badFactor)).toThrow(/norm = NaN/)
  })

  it('addCodes needs the vectors when the index keeps them, and not otherwise', async () => {
    const { dim, spatialIndex, compressor, data } = await setup('l2', 1)
    const block = encodeCodes(spatialIndex, compressor, data.subarray(0, 10 * dim))
    const keeping = createVectorIndex({ spatialIndex, compressor })
    expect(() => keeping.addCodes(block)).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_INVALID_OPTION' }),
    )
    expect(() => keeping.addCodes(block, { vectors: data.subarray(0, 9 * dim) })).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_DIMENSION_MISMATCH' }),
    )
    const lean = createVectorIndex({ spatialIndex, compressor, keepVectors: false })
    lean.addCodes(block, { ids: Array.from({ length: 10 }, (_, i) => BigInt(100 + i)) })
    expect(lean.size).toBe(10)
    expect(lean.search(row(data, dim, 3), { k: 1, nprobe: 12 }).ids[0]).toBe(103n)
    expect(() => lean.search(row(data, dim, 3), { k: 1, rerank: true })).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_NO_RERANK_VECTORS' }),
    )
  })
})
