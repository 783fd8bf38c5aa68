import { describe, expect, it } from 'vitest'
import { encodeSpatialIndex, trainSpatialIndex } from '../src/index.js'
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
})
