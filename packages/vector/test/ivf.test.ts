import { describe, expect, it, onTestFinished } from 'vitest'
import { encodeSpatialIndex, trainSpatialIndex } from '../src/index.js'
import { kmeansTuning } from '../src/ivf.js'
import { Prng, sampleIndices } from '../src/prng.js'
import { clustered, row } from './helpers/data.js'

describe('trainSpatialIndex', () => {
  it('defaults to about sqrt(N) lists and samples at most maxPointsPerList per list', async () => {
    const dim = 16
    const data = clustered({ n: 2500, dim, seed: 1 })
    const a = await trainSpatialIndex(data, { dim, metric: 'l2' })
    expect(a.lists).toBe(50)
    expect(a.training.samples).toBe(2500)
    const b = await trainSpatialIndex(data, { dim, metric: 'l2', lists: 20, maxPointsPerList: 30 })
    expect(b.training.samples).toBe(600)
    expect(b.centroids.length).toBe(20 * dim)
  })

  it('is deterministic for a seed, and identical with WASM and TypeScript kernels', async () => {
    const dim = 30
    const data = clustered({ n: 1000, dim, seed: 2 })
    for (const metric of ['l2', 'ip', 'cosine'] as const) {
      const wasm = await trainSpatialIndex(data, { dim, metric, kernels: 'wasm' })
      const js = await trainSpatialIndex(data, { dim, metric, kernels: 'js' })
      expect(encodeSpatialIndex(js)).toEqual(encodeSpatialIndex(wasm))
      const other = await trainSpatialIndex(data, { dim, metric, seed: 7 })
      expect(encodeSpatialIndex(other)).not.toEqual(encodeSpatialIndex(wasm))
    }
  })

  it('keeps unit centroids under ip and cosine (spherical k-means)', async () => {
    const dim = 12
    const data = clustered({ n: 600, dim, seed: 3, offset: 2 })
    for (const metric of ['ip', 'cosine'] as const) {
      const s = await trainSpatialIndex(data, { dim, metric, lists: 10 })
      for (let l = 0; l < 10; l++) {
        const c = row(s.centroids, dim, l)
        expect(Math.sqrt(c.reduce((t, v) => t + v * v, 0))).toBeCloseTo(1, 5)
      }
    }
  })

  it('refills empty lists, and stops early once nothing moves', async () => {
    const dim = 4
    // 3 distinct points, each repeated: k-means with 3 lists must end with one point per list
    const points = [
      [0, 0, 0, 0],
      [10, 0, 0, 0],
      [0, 10, 0, 0],
    ]
    const data: number[][] = []
    for (let i = 0; i < 90; i++) data.push(points[i % 3]!)
    const progress: number[] = []
    const s = await trainSpatialIndex(
      data.map((r) => Float32Array.from(r)),
      { dim, metric: 'l2', lists: 3, onProgress: (e) => progress.push(e.moved) },
    )
    const centroids = [0, 1, 2].map((l) => Array.from(row(s.centroids, dim, l))).sort()
    expect(centroids).toEqual([...points].map((p) => p.map(Number)).sort())
    expect(progress.at(-1)).toBe(0)
    expect(s.training.iterations).toBeLessThan(20)

    // More lists than distinct points: the spares stay empty but training succeeds.
    const dup = await trainSpatialIndex(
      data.map((r) => Float32Array.from(r)),
      { dim, metric: 'l2', lists: 6 },
    )
    expect(dup.lists).toBe(6)
  })

  it.each([
    ['Elkan', 1 << 24, 192 * 1024],
    ['Hamerly', 0, 192 * 1024],
    // blocks of 8 rows: several gemm blocks per pass, and the centroids scored 8 at a time
    ['Elkan, small blocks', 1 << 24, 0],
    ['Hamerly, small blocks', 0, 0],
  ])(
    'skips vectors by bounds (%s) without changing a result: the same moves and centroids as comparing every centroid',
    async (_, elkanMaxBounds, blockBytes) => {
      const saved = { ...kmeansTuning }
      Object.assign(kmeansTuning, { elkanMaxBounds, blockBytes })
      onTestFinished(() => {
        Object.assign(kmeansTuning, saved)
      })
      // The second has lists enough that the bounds leave a few candidates of many.
      for (const [metric, n, dim, lists, clusters] of [
        ['l2', 900, 24, 12, 16],
        ['cosine', 900, 24, 12, 16],
        ['l2', 2400, 40, 48, 30],
      ] as const) {
        const data = clustered({ n, dim, clusters, seed: 5 })
        const moves: number[] = []
        const trained = await trainSpatialIndex(data, {
          dim,
          metric,
          lists,
          onProgress: (e) => moves.push(e.moved),
        })
        // Plain k-means (every vector against every centroid, sums recomputed), same start.
        const rows = Float64Array.from(data)
        if (metric === 'cosine') for (let i = 0; i < n; i++) normalize(rows, i * dim, dim)
        const init = sampleIndices(n, lists, new Prng(0))
        const centroids = new Float64Array(lists * dim)
        for (let l = 0; l < lists; l++) {
          centroids.set(rows.subarray(init[l]! * dim, (init[l]! + 1) * dim), l * dim)
          if (metric === 'cosine') normalize(centroids, l * dim, dim)
        }
        const assignment = new Int32Array(n).fill(-1)
        const expected: number[] = []
        for (let it = 0; it < 20; it++) {
          let moved = 0
          for (let i = 0; i < n; i++) {
            let best = 0
            let bestCost = Number.POSITIVE_INFINITY
            for (let l = 0; l < lists; l++) {
              let cost = 0
              for (let j = 0; j < dim; j++) {
                const x = rows[i * dim + j]!
                const c = centroids[l * dim + j]!
                cost += metric === 'l2' ? (x - c) * (x - c) : -x * c
              }
              if (cost < bestCost) {
                bestCost = cost
                best = l
              }
            }
            if (assignment[i] !== best) moved++
            assignment[i] = best
          }
          expected.push(moved)
          if (moved === 0) break
          centroids.fill(0)
          const counts = new Uint32Array(lists)
          for (let i = 0; i < n; i++) {
            counts[assignment[i]!]!++
            for (let j = 0; j < dim; j++) centroids[assignment[i]! * dim + j]! += rows[i * dim + j]!
          }
          for (let l = 0; l < lists; l++) {
            for (let j = 0; j < dim; j++) centroids[l * dim + j]! /= counts[l]!
            if (metric === 'cosine') normalize(centroids, l * dim, dim)
          }
        }
        expect(moves).toEqual(expected)
        for (let i = 0; i < centroids.length; i++) expect(trained.centroids[i]).toBeCloseTo(centroids[i]!, 4)
      }
    },
  )
})

function normalize(data: Float64Array, offset: number, dim: number): void {
  let n2 = 0
  for (let j = 0; j < dim; j++) n2 += data[offset + j]! * data[offset + j]!
  const n = Math.sqrt(n2)
  for (let j = 0; j < dim; j++) data[offset + j]! /= n
}
