import { describe, expect, it } from 'vitest'
import { createKernels, type Kernels } from '../src/kernels/kernels.js'
import { KMEANS_PARAMS, type KmeansParams, kmeansScratch, writeKmeansParams } from '../src/kernels/kmeans.js'
import { Prng } from '../src/prng.js'
import { gaussian } from './helpers/data.js'

/**
 * One k-means assignment pass under Elkan's bounds, from a state whose bounds are valid (loose
 * by random amounts, some of them exact): the kernel and its TypeScript twin must leave the same
 * bytes, and every vector on its nearest centroid (the lowest cost, the lowest list on a tie).
 */
function setup(m: number, lists: number, dim: number, spherical: boolean, seed: number) {
  const prng = new Prng(seed)
  const dim4 = Math.ceil(dim / 4) * 4
  let end = 64
  const place = (bytes: number): number => {
    const at = Math.ceil(end / 8) * 8
    end = at + bytes
    return at
  }
  const p: KmeansParams = {
    m,
    lists,
    dim4,
    dim,
    spherical: spherical ? 1 : 0,
    sample: place(m * dim4 * 4),
    centroids: place(lists * dim4 * 4),
    norms: place(lists * 8),
    sampleNorms: place(m * 8),
    lower: place(m * lists * 4 + 8),
    drift: place((lists + 1) * 8),
    gaps: place(lists * lists * 4 + 8),
    byGap: place(lists * lists * 4),
    sortedGap: place(lists * lists * 4),
    half: place(lists * 8),
    upper: place(m * 8),
    assignment: place(m * 4),
    cost: place(m * 8),
    counts: place(lists * 4),
    sums: place(lists * dim * 8),
    candidates: place(kmeansScratch(lists).candidates),
    scores: place(Math.max(m * lists * 4, kmeansScratch(lists).scores)),
    scan: 8,
    tighten: 16,
    rows: place(m * 4),
    count: 0,
    hamerly: place(m * 8),
    bounds: 0,
  }
  const paramsAt = place(KMEANS_PARAMS.length * 4)
  const ref = createKernels('js')
  ref.reserve(end)
  const buf = ref.u8().buffer
  const f32 = ref.f32()
  // Clustered rows, centroids near some of them (so that vectors sit near several lists).
  const centers = Array.from({ length: Math.max(2, lists >> 1) }, () =>
    Float64Array.from({ length: dim }, () => gaussian(prng) * 3),
  )
  const fill = (off: number, count: number, spread: number) => {
    for (let r = 0; r < count; r++) {
      const c = centers[prng.below(centers.length)]!
      const row = Float64Array.from({ length: dim }, (_, j) => c[j]! + gaussian(prng) * spread)
      const n = spherical ? Math.sqrt(row.reduce((s, v) => s + v * v, 0)) : 1
      for (let j = 0; j < dim; j++) f32[(off >>> 2) + r * dim4 + j] = row[j]! / n
    }
  }
  fill(p.sample, m, 1)
  fill(p.centroids, lists, 0.5)
  const norms = new Float64Array(buf, p.norms, lists)
  const sampleNorms = new Float64Array(buf, p.sampleNorms, m)
  const sq = (off: number) => {
    let s = 0
    for (let j = 0; j < dim; j++) s += f32[(off >>> 2) + j]! ** 2
    return s
  }
  for (let l = 0; l < lists; l++) norms[l] = sq(p.centroids + l * dim4 * 4)
  for (let i = 0; i < m; i++) sampleNorms[i] = sq(p.sample + i * dim4 * 4)
  // The kernel's own products: `dot`'s bits.
  const dots = (i: number, l: number) => ref.dot(p.sample + i * dim4 * 4, p.centroids + l * dim4 * 4, dim4)
  const dist = (i: number, l: number) => Math.sqrt(Math.max(0, sampleNorms[i]! + norms[l]! - 2 * dots(i, l)))
  const cost = (i: number, l: number) => (spherical ? -dots(i, l) : norms[l]! - 2 * dots(i, l))
  const drift = new Float64Array(buf, p.drift, lists + 1)
  for (let l = 0; l < lists; l++) drift[l] = prng.below(3) === 0 ? 0 : Math.abs(gaussian(prng))
  const gaps = new Float32Array(buf, p.gaps, lists * lists)
  const half = new Float64Array(buf, p.half, lists)
  const byGap = new Uint32Array(buf, p.byGap, lists * lists)
  const sortedGap = new Float32Array(buf, p.sortedGap, lists * lists)
  for (let a = 0; a < lists; a++) {
    let nearest = Number.POSITIVE_INFINITY
    for (let l = 0; l < lists; l++) {
      const d = ref.dot(p.centroids + a * dim4 * 4, p.centroids + l * dim4 * 4, dim4)
      const g = Math.sqrt(Math.max(0, norms[a]! + norms[l]! - 2 * d)) / 2
      gaps[a * lists + l] = l === a ? 0 : g
      if (l !== a) nearest = Math.min(nearest, g)
    }
    half[a] = nearest
    const order = Array.from({ length: lists }, (_, l) => l).sort(
      (x, y) => gaps[a * lists + x]! - gaps[a * lists + y]! || x - y,
    )
    for (let j = 0; j < lists; j++) {
      byGap[a * lists + j] = order[j]!
      sortedGap[a * lists + j] = gaps[a * lists + order[j]!]!
    }
  }
  // Bounds: valid, loose by random amounts; a quarter exact; assignments partly stale.
  const lower = new Float32Array(buf, p.lower, m * lists)
  const upper = new Float64Array(buf, p.upper, m)
  const assignment = new Uint32Array(buf, p.assignment, m)
  for (let i = 0; i < m; i++) {
    let a = 0
    for (let l = 1; l < lists; l++) if (cost(i, l) < cost(i, a)) a = l
    if (prng.below(3) === 0) a = prng.below(lists)
    assignment[i] = a
    const loose = () => (prng.below(4) === 0 ? 0 : Math.abs(gaussian(prng)) * 0.3)
    upper[i] = dist(i, a) * (1 + loose())
    // (less 1e-5, so that rounding to f32 keeps them under the distance)
    for (let l = 0; l < lists; l++)
      lower[i * lists + l] = Math.max(0, dist(i, l) * (1 - loose()) - 1e-5) + drift[l]!
  }
  const sums = new Float64Array(buf, p.sums, lists * dim)
  for (let j = 0; j < sums.length; j++) sums[j] = gaussian(prng)
  writeKmeansParams(ref, paramsAt, p)
  return { bytes: new Uint8Array(buf, 0, end).slice(), p, paramsAt, cost, dist, ref, dots }
}

function run(
  kind: 'wasm' | 'js',
  bytes: Uint8Array,
  paramsAt: number,
  kernel: 'kmeans' | 'kscored' = 'kmeans',
): { k: Kernels; moved: number } {
  const k = createKernels(kind)
  k.reserve(bytes.length)
  k.u8().set(bytes)
  return { k, moved: kernel === 'kmeans' ? k.kmeans(paramsAt) : k.kscored(paramsAt) }
}

describe('kmeans kernel', () => {
  it.each([
    ['l2, few lists (gap-ordered scan only)', 120, 6, 12, false, 1],
    ['cosine, odd dim', 200, 13, 30, true, 2],
    ['l2, many lists (tightening)', 300, 60, 17, false, 3],
    ['cosine, many lists', 300, 45, 64, true, 4],
  ] as const)(
    '%s: the same bytes in TypeScript and WASM, every vector on its nearest centroid',
    (_, m, lists, dim, spherical, seed) => {
      const { bytes, p, paramsAt, cost, dist } = setup(m, lists, dim, spherical, seed)
      const a = run('wasm', bytes, paramsAt)
      const b = run('js', bytes, paramsAt)
      expect(a.moved).toBe(b.moved)
      const region = (k: Kernels, off: number, n: number) => Array.from(k.u8().subarray(off, off + n))
      for (const [off, n] of [
        [p.assignment, m * 4],
        [p.upper, m * 8],
        [p.cost, m * 8],
        [p.counts, lists * 4],
        [p.sums, lists * dim * 8],
        [p.lower, m * lists * 4],
      ] as const) {
        expect(region(a.k, off, n)).toEqual(region(b.k, off, n))
      }
      const before = new Uint32Array(bytes.buffer, p.assignment, m)
      const after = new Uint32Array(a.k.u8().buffer, p.assignment, m)
      const counts = new Uint32Array(a.k.u8().buffer, p.counts, lists)
      const upper = new Float64Array(a.k.u8().buffer, p.upper, m)
      const want = new Uint32Array(lists)
      let moved = 0
      for (let i = 0; i < m; i++) {
        let best = 0
        for (let l = 1; l < lists; l++) if (cost(i, l) < cost(i, best)) best = l
        expect(after[i]).toBe(best)
        want[best]!++
        if (before[i] !== best) moved++
        expect(upper[i]! + 1e-9).toBeGreaterThanOrEqual(dist(i, best))
      }
      expect(a.moved).toBe(moved)
      expect(moved).toBeGreaterThan(0)
      expect(Array.from(counts)).toEqual(Array.from(want))
      // The lists' sums follow the vectors that moved.
      const sums0 = new Float64Array(bytes.buffer, p.sums, lists * dim)
      const sums = new Float64Array(a.k.u8().buffer, p.sums, lists * dim)
      const rows = new Float32Array(bytes.buffer, p.sample, m * p.dim4)
      const expected = Float64Array.from(sums0)
      for (let i = 0; i < m; i++) {
        if (before[i] === after[i]) continue
        for (let j = 0; j < dim; j++) {
          expected[before[i]! * dim + j]! -= rows[i * p.dim4 + j]!
          expected[after[i]! * dim + j]! += rows[i * p.dim4 + j]!
        }
      }
      for (let j = 0; j < sums.length; j++) expect(sums[j]).toBeCloseTo(expected[j]!, 9)
    },
  )

  it.each([
    ['l2, first iteration (no list yet), no per-list bounds', 150, 7, 12, false, 5, 0, true],
    ['cosine, odd dim, per-list bounds', 200, 13, 30, true, 6, 1, false],
    ['l2, one list', 40, 1, 8, false, 7, 1, true],
  ] as const)(
    'kscored, %s: the same bytes in TypeScript and WASM, the nearest list, the second for Hamerly',
    (_, m, lists, dim, spherical, seed, bounds, fresh) => {
      const { bytes, p, paramsAt, cost, dist, ref } = setup(m, lists, dim, spherical, seed)
      // A block of two vectors in three, in order; those of a first iteration have no list yet.
      const rows = Array.from({ length: m }, (_, i) => i).filter((i) => i % 3 !== 1)
      const heap = ref.u32()
      rows.forEach((i, q) => {
        heap[(p.rows >>> 2) + q] = p.sample + i * p.dim4 * 4
      })
      if (fresh) for (const i of rows) heap[(p.assignment >>> 2) + i] = 0xffffffff
      ref.gemm(p.rows, rows.length, p.centroids, lists, p.dim4, p.scores)
      writeKmeansParams(ref, paramsAt, { ...p, count: rows.length, bounds })
      const prepared = ref.u8().slice(0, bytes.length)
      const a = run('wasm', prepared, paramsAt, 'kscored')
      const b = run('js', prepared, paramsAt, 'kscored')
      expect(a.moved).toBe(b.moved)
      const region = (k: Kernels, off: number, n: number) => Array.from(k.u8().subarray(off, off + n))
      for (const [off, n] of [
        [p.assignment, m * 4],
        [p.upper, m * 8],
        [p.hamerly, m * 8],
        [p.cost, m * 8],
        [p.counts, lists * 4],
        [p.sums, lists * dim * 8],
        [p.lower, m * lists * 4],
      ] as const) {
        expect(region(a.k, off, n)).toEqual(region(b.k, off, n))
      }
      const before = new Int32Array(prepared.buffer, p.assignment, m)
      const after = new Int32Array(a.k.u8().buffer, p.assignment, m)
      const hamerly = new Float64Array(a.k.u8().buffer, p.hamerly, m)
      const lower = new Float32Array(a.k.u8().buffer, p.lower, m * lists)
      const lower0 = new Float32Array(prepared.buffer, p.lower, m * lists)
      const drift = new Float64Array(prepared.buffer, p.drift, lists)
      let moved = 0
      for (let i = 0; i < m; i++) {
        if (i % 3 === 1) {
          expect(after[i]).toBe(before[i])
          continue
        }
        const order = Array.from({ length: lists }, (_, l) => l).sort(
          (x, y) => cost(i, x) - cost(i, y) || x - y,
        )
        expect(after[i]).toBe(order[0])
        if (before[i] !== order[0]) moved++
        expect(hamerly[i]).toBe(lists > 1 ? dist(i, order[1]!) : Number.POSITIVE_INFINITY)
        for (let l = 0; l < lists; l++) {
          const want = bounds ? Math.fround(dist(i, l) + drift[l]!) : lower0[i * lists + l]
          expect(lower[i * lists + l]).toBe(want)
        }
      }
      expect(a.moved).toBe(moved)
    },
  )
})
