import { describe, expect, it } from 'vitest'
import { createExactScan, type ExactHits } from '../src/index.js'
import { Prng } from '../src/prng.js'
import { clustered, distance, type Metric, row } from './helpers/data.js'

/** The definition: every distance, sorted by (distance, id), the first k. */
function sorted(
  data: Float32Array,
  ids: BigUint64Array,
  dim: number,
  query: Float32Array,
  k: number,
  metric: Metric,
) {
  const all = Array.from(ids, (id, i) => ({ id, d: distance(metric, query, row(data, dim, i)) }))
  all.sort((a, b) => a.d - b.d || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return all.slice(0, k)
}

/** Offer `data` in blocks of the sizes given (cycled), in the block order given. */
function scanInBlocks(
  data: Float32Array,
  ids: BigUint64Array,
  dim: number,
  query: Float32Array,
  options: {
    k: number
    metric: Metric
    sizes: number[]
    reverse?: boolean
    filter?: (id: bigint) => boolean
  },
): ExactHits {
  const scan = createExactScan(query, {
    dim,
    metric: options.metric,
    k: options.k,
    ...(options.filter ? { filter: options.filter } : {}),
  })
  const blocks: [number, number][] = []
  for (let start = 0, b = 0; start < ids.length; b++) {
    const end = Math.min(ids.length, start + options.sizes[b % options.sizes.length]!)
    blocks.push([start, end])
    start = end
  }
  if (options.reverse) blocks.reverse()
  for (const [start, end] of blocks) scan.add(data.subarray(start * dim, end * dim), ids.subarray(start, end))
  return scan.result()
}

describe('createExactScan', () => {
  const dim = 24
  const n = 1500
  const data = clustered({ n, dim, seed: 7 })
  // Ids on both sides of 2^32 and near 2^64, not in scan order.
  const prng = new Prng(3)
  const ids = BigUint64Array.from({ length: n }, (_, i) =>
    i % 3 === 0
      ? BigInt(i)
      : i % 3 === 1
        ? (1n << 32n) + BigInt(prng.nextUint32()) * 7n + BigInt(i)
        : (1n << 64n) - 1n - BigInt(i),
  )

  for (const metric of ['l2', 'ip', 'cosine'] as const) {
    it(`finds the k nearest under ${metric}, whatever the blocks and their order`, () => {
      for (const q of [0, 17, 1234]) {
        const query = row(data, dim, q).map((v, j) => v + 0.01 * Math.sin(j + q))
        const want = sorted(data, ids, dim, query, 25, metric)
        const forward = scanInBlocks(data, ids, dim, query, { k: 25, metric, sizes: [4096] })
        const odd = scanInBlocks(data, ids, dim, query, {
          k: 25,
          metric,
          sizes: [1, 7, 300, 64],
          reverse: true,
        })
        expect(Array.from(forward.ids)).toEqual(want.map((h) => h.id))
        for (let i = 0; i < want.length; i++) expect(forward.distances[i]).toBeCloseTo(want[i]!.d, 4)
        expect(Array.from(odd.ids)).toEqual(Array.from(forward.ids))
        expect(Array.from(odd.distances)).toEqual(Array.from(forward.distances))
      }
    })
  }

  it('ranks equal distances by id, and a k above the count returns every vector', () => {
    // Four copies of one vector and one other: the copies tie.
    const v = [1, 2, 3]
    const block = Float32Array.from([...v, ...v, 5, 5, 5, ...v, ...v])
    const tieIds = BigUint64Array.from([9n, (1n << 40n) + 1n, 4n, 2n ** 63n, 1n])
    const scan = createExactScan(v, { dim: 3, metric: 'l2', k: 1000 })
    scan.add(block, tieIds)
    const { ids: got, distances } = scan.result()
    expect(Array.from(got)).toEqual([1n, 9n, (1n << 40n) + 1n, 2n ** 63n, 4n])
    expect(Array.from(distances)).toEqual([0, 0, 0, 0, 16 + 9 + 4])
  })

  it('keeps only ids the filter allows', () => {
    const query = row(data, dim, 5)
    const even = (id: bigint) => id % 2n === 0n
    const got = scanInBlocks(data, ids, dim, query, { k: 10, metric: 'l2', sizes: [100], filter: even })
    const keep = Array.from(ids.keys()).filter((i) => even(ids[i]!))
    const want = sorted(
      Float32Array.from(keep.flatMap((i) => Array.from(row(data, dim, i)))),
      BigUint64Array.from(keep.map((i) => ids[i]!)),
      dim,
      query,
      10,
      'l2',
    )
    expect(Array.from(got.ids)).toEqual(want.map((h) => h.id))
  })

  it('distances match the metric exactly, and a stored zero vector is at cosine distance 1', () => {
    const scan = createExactScan([3, 4], { dim: 2, metric: 'cosine', k: 3 })
    scan.add(Float32Array.from([0, 0, 6, 8, -3, -4]), BigUint64Array.from([1n, 2n, 3n]))
    const got = scan.result()
    expect(Array.from(got.ids)).toEqual([2n, 1n, 3n])
    expect(Array.from(got.distances)).toEqual([0, 1, 2])
    const ip = createExactScan([3, 4], { dim: 2, metric: 'ip', k: 1 })
    ip.add(Float32Array.from([1, 1, 2, 0]), BigUint64Array.from([1n, 2n]))
    expect(Array.from(ip.result().distances)).toEqual([-7])
    // An empty scan returns nothing.
    expect(createExactScan([1], { dim: 1, metric: 'l2', k: 5 }).result().ids.length).toBe(0)
  })

  it('refuses a bad query, k, block or value with a typed error', () => {
    const opts = { dim: 3, metric: 'cosine' as const, k: 2 }
    expect(() => createExactScan([1, 2], opts)).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_DIMENSION_MISMATCH' }),
    )
    expect(() => createExactScan([1, Number.NaN, 2], opts)).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_NOT_FINITE', component: 1 }),
    )
    expect(() => createExactScan([0, 0, 0], opts)).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_ZERO_VECTOR' }),
    )
    expect(() => createExactScan([1, 2, 3], { ...opts, k: 0 })).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_INVALID_OPTION', option: 'k' }),
    )
    expect(() => createExactScan([1, 2, 3], { ...opts, metric: 'dot' as Metric })).toThrow(
      expect.objectContaining({ option: 'metric' }),
    )
    const scan = createExactScan([1, 2, 3], opts)
    expect(() => scan.add(new Float32Array(5), new BigUint64Array(2))).toThrow(
      expect.objectContaining({ option: 'vectors' }),
    )
    expect(() =>
      scan.add(Float32Array.from([1, 1, 1, 1, Number.POSITIVE_INFINITY, 1]), BigUint64Array.from([1n, 2n])),
    ).toThrow(expect.objectContaining({ code: 'ERR_VECTOR_NOT_FINITE', vector: 1, component: 1 }))
  })
})
