import { describe, expect, it } from 'vitest'
import { createCompressor, createVectorIndex, encodeCodes, trainSpatialIndex } from '../src/index.js'
import { clustered } from './helpers/data.js'

const code = (c: string) => expect.objectContaining({ code: c })

describe('bad input is a typed error, never a wrong answer', () => {
  it('training', async () => {
    const dim = 8
    const data = clustered({ n: 50, dim, seed: 1 })
    await expect(trainSpatialIndex(data, { dim: 7, metric: 'l2' })).rejects.toThrow(
      code('ERR_VECTOR_DIMENSION_MISMATCH'),
    )
    await expect(
      trainSpatialIndex([new Float32Array(8), new Float32Array(9)], { dim, metric: 'l2' }),
    ).rejects.toThrow(code('ERR_VECTOR_DIMENSION_MISMATCH'))
    const nan = data.slice()
    nan[3 * dim + 2] = Number.NaN
    await expect(trainSpatialIndex(nan, { dim, metric: 'l2' })).rejects.toMatchObject({
      code: 'ERR_VECTOR_NOT_FINITE',
      vector: 3,
      component: 2,
    })
    const inf = data.slice()
    inf[0] = Number.POSITIVE_INFINITY
    await expect(trainSpatialIndex(inf, { dim, metric: 'ip' })).rejects.toThrow(code('ERR_VECTOR_NOT_FINITE'))
    const zero = data.slice()
    zero.fill(0, 5 * dim, 6 * dim)
    await expect(trainSpatialIndex(zero, { dim, metric: 'cosine' })).rejects.toMatchObject({
      code: 'ERR_VECTOR_ZERO_VECTOR',
      vector: 5,
    })
    await expect(trainSpatialIndex(zero, { dim, metric: 'l2' })).resolves.toBeDefined() // fine under l2
    await expect(trainSpatialIndex(data, { dim, metric: 'l2', lists: 51 })).rejects.toMatchObject({
      code: 'ERR_VECTOR_NOT_ENOUGH_VECTORS',
      count: 50,
      needed: 51,
    })
    await expect(trainSpatialIndex(new Float32Array(0), { dim, metric: 'l2' })).rejects.toThrow(
      code('ERR_VECTOR_NOT_ENOUGH_VECTORS'),
    )
    await expect(trainSpatialIndex(data, { dim, metric: 'hamming' as 'l2' })).rejects.toThrow(
      code('ERR_VECTOR_INVALID_OPTION'),
    )
    await expect(trainSpatialIndex(data, { dim: 0, metric: 'l2' })).rejects.toThrow(
      code('ERR_VECTOR_INVALID_OPTION'),
    )
    await expect(trainSpatialIndex(data, { dim, metric: 'l2', lists: 1.5 })).rejects.toThrow(
      code('ERR_VECTOR_INVALID_OPTION'),
    )
    await expect(
      trainSpatialIndex(data, { dim, metric: 'l2', signal: AbortSignal.abort(new Error('stop')) }),
    ).rejects.toThrow('stop')
  })

  it('compressors', () => {
    expect(() => createCompressor({ dim: 8, metric: 'l2', bits: 0 })).toThrow(
      code('ERR_VECTOR_INVALID_OPTION'),
    )
    expect(() => createCompressor({ dim: 8, metric: 'l2', bits: 9 })).toThrow(
      code('ERR_VECTOR_INVALID_OPTION'),
    )
    expect(() => createCompressor({ dim: 16385, metric: 'l2' })).toThrow(code('ERR_VECTOR_INVALID_OPTION'))
    expect(() => createCompressor({ dim: 8, metric: 'l2', seed: -1 })).toThrow(
      code('ERR_VECTOR_INVALID_OPTION'),
    )
    expect(createCompressor({ dim: 8, metric: 'l2' }).paddedDim).toBe(64)
    expect(createCompressor({ dim: 65, metric: 'l2' }).paddedDim).toBe(128)
  })

  it('indexes and searches', async () => {
    const dim = 8
    const data = clustered({ n: 200, dim, seed: 1 })
    const spatialIndex = await trainSpatialIndex(data, { dim, metric: 'cosine', lists: 5 })
    expect(() =>
      createVectorIndex({ spatialIndex, compressor: createCompressor({ dim: 9, metric: 'cosine' }) }),
    ).toThrow(code('ERR_VECTOR_INCOMPATIBLE'))
    expect(() =>
      createVectorIndex({ spatialIndex, compressor: createCompressor({ dim, metric: 'l2' }) }),
    ).toThrow(code('ERR_VECTOR_INCOMPATIBLE'))
    expect(() => encodeCodes(spatialIndex, createCompressor({ dim, metric: 'ip' }), data)).toThrow(
      code('ERR_VECTOR_INCOMPATIBLE'),
    )
    const index = createVectorIndex({ spatialIndex, compressor: createCompressor({ dim, metric: 'cosine' }) })
    const zero = data.slice(0, 2 * dim)
    zero.fill(0, dim)
    expect(() => index.add(zero)).toThrow(code('ERR_VECTOR_ZERO_VECTOR'))
    expect(index.size).toBe(0) // nothing half-added
    expect(() => index.add(data, { ids: [1n, 2n] })).toThrow(code('ERR_VECTOR_DIMENSION_MISMATCH'))
    expect(() => index.add(data.subarray(0, dim), { ids: [-1n] })).toThrow(code('ERR_VECTOR_INVALID_OPTION'))
    expect(() => index.add(data.subarray(0, dim), { ids: [2n ** 64n] })).toThrow(
      code('ERR_VECTOR_INVALID_OPTION'),
    )
    index.add(data)
    const q = data.subarray(0, dim)
    expect(() => index.search(q.subarray(1), { k: 1 })).toThrow(code('ERR_VECTOR_DIMENSION_MISMATCH'))
    expect(() => index.search(new Float32Array(dim), { k: 1 })).toThrow(code('ERR_VECTOR_ZERO_VECTOR'))
    expect(() => index.search([1, 2, 3, 4, 5, 6, 7, Number.NaN], { k: 1 })).toThrow(
      code('ERR_VECTOR_NOT_FINITE'),
    )
    for (const k of [0, -1, 1.5, Number.NaN]) {
      expect(() => index.search(q, { k })).toThrow(code('ERR_VECTOR_INVALID_OPTION'))
    }
    for (const nprobe of [0, 6, 2.5]) {
      expect(() => index.search(q, { k: 1, nprobe })).toThrow(code('ERR_VECTOR_INVALID_OPTION'))
    }
    expect(() => index.search(q, { k: 1, epsilon0: -1 })).toThrow(code('ERR_VECTOR_INVALID_OPTION'))
    expect(() => index.search(q, { k: 1, filter: 3 as unknown as () => boolean })).toThrow(
      code('ERR_VECTOR_INVALID_OPTION'),
    )
    expect(index.search(q, { k: 1, nprobe: 5 }).ids[0]).toBe(0n)
  })
})
