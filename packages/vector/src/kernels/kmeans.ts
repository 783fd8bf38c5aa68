/**
 * The TypeScript twin of the `kmeans` kernel (kernels.wat): one assignment pass of k-means
 * under Elkan's bounds over every sample vector, on the same heap layout and parameter block,
 * with the same float operations in the same order (so the same bits). It is the loop
 * ivf.ts ran in JavaScript before the kernel took it over; the products go through the
 * twins' `dot` and `distances`, which give `dot`'s bits as the kernel's `$quad` does.
 */
import type { Kernels } from './kernels.js'

/** Fields of the parameter block (u32 each), in order; see kernels.wat. */
export const KMEANS_PARAMS = [
  'm',
  'lists',
  'dim4',
  'dim',
  'spherical',
  'sample',
  'centroids',
  'norms',
  'sampleNorms',
  'lower',
  'drift',
  'gaps',
  'byGap',
  'sortedGap',
  'half',
  'upper',
  'assignment',
  'cost',
  'counts',
  'sums',
  'candidates',
  'scores',
  'scan',
  'tighten',
  'rows',
  'count',
  'hamerly',
  'bounds',
] as const
export type KmeansParams = Record<(typeof KMEANS_PARAMS)[number], number>

/**
 * Bytes of the `kmeans` kernel's scratch for `lists` lists (it works on sixteen vectors at a
 * time): `candidates` (each vector's candidates, their counts, the queue of products) and
 * `scores`. Enough for the twin, which takes one vector at a time.
 */
export function kmeansScratch(lists: number): { candidates: number; scores: number } {
  return {
    candidates: 16 * (lists + 4) * 4 + 64 + (16 * Math.ceil(lists / 4) + 1) * 24,
    scores: 16 * (lists + 4) * 4,
  }
}

/** Write `params` at byte offset `at` of the heap (KMEANS_PARAMS.length u32). */
export function writeKmeansParams(k: Kernels, at: number, params: KmeansParams): void {
  const u32 = k.u32()
  for (let f = 0; f < KMEANS_PARAMS.length; f++) u32[(at >>> 2) + f] = params[KMEANS_PARAMS[f]!]
}

function readParams(k: Kernels, at: number): Partial<KmeansParams> {
  const u32 = k.u32()
  const p: Partial<KmeansParams> = {}
  for (let f = 0; f < KMEANS_PARAMS.length; f++) p[KMEANS_PARAMS[f]!] = u32[(at >>> 2) + f]!
  return p
}

/** The twin of `kscored`: a block of vectors scored against every centroid (kernels.wat). */
export function kscoredTwin(k: Kernels, at: number): number {
  const p = readParams(k, at)
  const { m, lists, dim4, dim, spherical, count } = p as KmeansParams
  const buffer = k.u8().buffer
  const u32 = k.u32()
  const heap = k.f32()
  const rowsStride = dim4 * 4
  const f64 = (off: number, n: number) => new Float64Array(buffer, off, n)
  const norms = f64(p.norms!, lists)
  const drift = f64(p.drift!, lists)
  const sums = f64(p.sums!, lists * dim)
  const sampleNorms = f64(p.sampleNorms!, m)
  const cost = f64(p.cost!, m)
  const upper = f64(p.upper!, m)
  const hamerly = f64(p.hamerly!, m)
  const assignment = new Int32Array(buffer, p.assignment!, m)
  const counts = new Uint32Array(buffer, p.counts!, lists)
  let moved = 0
  for (let q = 0; q < count; q++) {
    const row = u32[(p.rows! >>> 2) + q]!
    const i = (row - p.sample!) / rowsStride
    const sn = sampleNorms[i]!
    const a = assignment[i]!
    const s = (p.scores! >>> 2) + q * lists
    let best = 0
    let bestCost = Number.POSITIVE_INFINITY
    let second = -1
    let secondCost = Number.POSITIVE_INFINITY
    for (let l = 0; l < lists; l++) {
      const c = spherical ? -heap[s + l]! : norms[l]! - 2 * heap[s + l]!
      if (c < bestCost) {
        second = best
        secondCost = bestCost
        bestCost = c
        best = l
      } else if (c < secondCost) {
        secondCost = c
        second = l
      }
    }
    if (a !== best) {
      moved++
      const x = row >>> 2
      if (a >= 0) for (let j = 0; j < dim; j++) sums[a * dim + j]! -= heap[x + j]!
      for (let j = 0; j < dim; j++) sums[best * dim + j]! += heap[x + j]!
    }
    assignment[i] = best
    cost[i] = spherical ? bestCost : bestCost + sn
    counts[best]!++
    upper[i] = Math.sqrt(Math.max(0, sn + norms[best]! - 2 * heap[s + best]!))
    hamerly[i] =
      lists > 1 && second >= 0
        ? Math.sqrt(Math.max(0, sn + norms[second]! - 2 * heap[s + second]!))
        : Number.POSITIVE_INFINITY
    if (p.bounds) {
      const lower = new Float32Array(buffer, p.lower! + i * lists * 4, lists)
      for (let l = 0; l < lists; l++)
        lower[l] = Math.sqrt(Math.max(0, sn + norms[l]! - 2 * heap[s + l]!)) + drift[l]!
    }
  }
  return moved
}

export function kmeansTwin(k: Kernels, at: number): number {
  const u32 = k.u32()
  const p = readParams(k, at)
  const { m, lists, dim4, dim, spherical, scan, tighten } = p as KmeansParams
  const buffer = k.u8().buffer
  const f64 = (off: number, n: number) => new Float64Array(buffer, off, n)
  const norms = f64(p.norms!, lists)
  const sampleNorms = f64(p.sampleNorms!, m)
  const drift = f64(p.drift!, lists)
  const half = f64(p.half!, lists)
  const upper = f64(p.upper!, m)
  const cost = f64(p.cost!, m)
  const sums = f64(p.sums!, lists * dim)
  const lowerAll = new Float32Array(buffer, p.lower!, m * lists)
  const sortedGap = new Float32Array(buffer, p.sortedGap!, lists * lists)
  const byGap = new Uint32Array(buffer, p.byGap!, lists * lists)
  const assignment = new Uint32Array(buffer, p.assignment!, m)
  const counts = new Uint32Array(buffer, p.counts!, lists)
  const heap = k.f32()
  const centroidsOff = p.centroids!
  const candOff = p.candidates!
  const scoresOff = p.scores!
  const rowsOff = scoresOff + (lists + 4) * 4
  const stride = dim4 * 4
  let moved = 0
  for (let i = 0; i < m; i++) {
    const row = p.sample! + i * stride
    const a = assignment[i]!
    let u = upper[i]!
    const sn = sampleNorms[i]!
    let count = 0
    if (u > half[a]!) {
      const lo = i * lists
      const gaps = a * lists
      const lowerOff = p.lower! + lo * 4
      const gapOff = p.gaps! + gaps * 4
      u32[candOff >>> 2] = a
      count = 1
      if (lists > scan && u > sortedGap[gaps + scan]!) {
        count += k.elkan(lowerOff, p.drift!, gapOff, lists, u, a, candOff + 4)
      } else {
        for (let j = 0; j < lists; j++) {
          if (!(u > sortedGap[gaps + j]!)) break
          const l = byGap[gaps + j]!
          if (u + drift[l]! > lowerAll[lo + l]! && l !== a) u32[(candOff >>> 2) + count++] = l
        }
      }
      if (count > tighten) {
        const t = Math.sqrt(Math.max(0, sn + norms[a]! - 2 * k.dot(row, centroidsOff + a * stride, dim4)))
        count = 1 + k.elkan(lowerOff, p.drift!, gapOff, lists, Math.min(t, u), a, candOff + 4)
        u = t
        upper[i] = t
      }
      if (count > 1) {
        for (let q = 0; q < count; q++)
          u32[(rowsOff >>> 2) + q] = centroidsOff + u32[(candOff >>> 2) + q]! * stride
        k.distances(row, rowsOff, count, dim4, 0, scoresOff)
        let best = a
        let bestDot = heap[scoresOff >>> 2]!
        let bestCost = spherical ? -bestDot : norms[a]! - 2 * bestDot
        for (let q = 1; q < count; q++) {
          const l = u32[(candOff >>> 2) + q]!
          const d = heap[(scoresOff >>> 2) + q]!
          const c = spherical ? -d : norms[l]! - 2 * d
          lowerAll[lo + l] = Math.sqrt(Math.max(0, sn + norms[l]! - 2 * d)) + drift[l]!
          if (c < bestCost || (c === bestCost && l < best)) {
            best = l
            bestCost = c
            bestDot = d
          }
        }
        if (best !== a) {
          moved++
          lowerAll[lo + a] = Math.sqrt(Math.max(0, sn + norms[a]! - 2 * heap[scoresOff >>> 2]!)) + drift[a]!
          const at = row >>> 2
          for (let j = 0; j < dim; j++) sums[a * dim + j]! -= heap[at + j]!
          for (let j = 0; j < dim; j++) sums[best * dim + j]! += heap[at + j]!
          assignment[i] = best
        }
        upper[i] = Math.sqrt(Math.max(0, sn + norms[best]! - 2 * bestDot))
        cost[i] = spherical ? bestCost : bestCost + sn
        counts[best]!++
        continue
      }
    }
    const u2 = u * u
    cost[i] = spherical ? (u2 - sn - norms[a]!) / 2 : u2
    counts[a]!++
  }
  return moved
}
