/** Deterministic test data: clustered Gaussian vectors from a seeded generator, and brute force. */
import { Prng } from '../../src/prng.js'

export function gaussian(prng: Prng): number {
  // Box-Muller on (0, 1]
  const u = 1 - prng.next()
  const v = prng.next()
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
}

export interface ClusteredOptions {
  n: number
  dim: number
  clusters?: number
  /** Spread of points around their cluster centre, relative to the spread of centres. */
  spread?: number
  seed?: number
  /** Per-dimension scales decaying like i^-alpha (anisotropic, embedding-like). */
  alpha?: number
  /** Add this offset to every component (uncentred data, like SIFT). */
  offset?: number
}

/** `n` vectors (row-major) around `clusters` random centres, with a power-law spectrum. */
export function clustered(options: ClusteredOptions): Float32Array {
  const { n, dim, clusters = 32, spread = 0.5, seed = 1, alpha = 0.5, offset = 0 } = options
  const prng = new Prng(seed)
  const scale = Float64Array.from({ length: dim }, (_, i) => (i + 1) ** -alpha)
  const centres = new Float64Array(clusters * dim)
  for (let i = 0; i < centres.length; i++) centres[i] = gaussian(prng) * scale[i % dim]!
  const out = new Float32Array(n * dim)
  for (let i = 0; i < n; i++) {
    const c = prng.below(clusters)
    for (let j = 0; j < dim; j++)
      out[i * dim + j] = offset + centres[c * dim + j]! + spread * gaussian(prng) * scale[j]!
  }
  return out
}

export function row(data: Float32Array, dim: number, i: number): Float32Array {
  return data.subarray(i * dim, (i + 1) * dim)
}

export type Metric = 'l2' | 'ip' | 'cosine'

export function distance(metric: Metric, a: Float32Array, b: Float32Array): number {
  let dot = 0
  let aa = 0
  let bb = 0
  let l2 = 0
  for (let j = 0; j < a.length; j++) {
    dot += a[j]! * b[j]!
    aa += a[j]! * a[j]!
    bb += b[j]! * b[j]!
    l2 += (a[j]! - b[j]!) ** 2
  }
  if (metric === 'l2') return l2
  if (metric === 'ip') return -dot
  return 1 - dot / Math.sqrt(aa * bb)
}

/** Exact top-k ids (as numbers) of `query` in `data` under `metric`. */
export function bruteForce(
  data: Float32Array,
  dim: number,
  query: Float32Array,
  k: number,
  metric: Metric,
): number[] {
  const n = data.length / dim
  const d = new Float64Array(n)
  for (let i = 0; i < n; i++) d[i] = distance(metric, query, row(data, dim, i))
  const order = Array.from({ length: n }, (_, i) => i)
  order.sort((a, b) => d[a]! - d[b]! || a - b)
  return order.slice(0, k)
}

export function recall(found: BigUint64Array, truth: number[]): number {
  const want = new Set(truth)
  let hit = 0
  for (const id of found) if (want.has(Number(id))) hit++
  return hit / truth.length
}
