/**
 * IVF training: k-means on a sample of at most `maxPointsPerList` vectors per list, from
 * distinct random sample points, until no assignment moves or `iterations` run out. A list
 * left empty takes the member of the largest list farthest from its centroid. Under `ip`
 * and `cosine` it is spherical k-means (unit centroids, assignment by largest inner
 * product), the same rule `add` and `search` use, so training and search agree.
 */
import type { AbortOptions } from '@dreamdb/cas'
import { NotEnoughVectorsError } from './errors.js'
import { createKernels, type KernelChoice } from './kernels/kernels.js'
import type { Metric, SpatialIndex } from './model.js'
import { Prng, sampleIndices } from './prng.js'
import { checkDim, checkInteger, checkMetric, toMatrix, type VectorsInput } from './vectors.js'

/** What training reports while it works. */
export interface TrainProgressEvent {
  type: 'dreamdb:vector:kmeans'
  /** 1-based. */
  iteration: number
  iterations: number
  /** Sample vectors that changed list in this iteration. */
  moved: number
}

export interface TrainOptions extends AbortOptions {
  dim: number
  metric: Metric
  /**
   * Number of lists (centroids).
   * @default round(sqrt(number of vectors)), at least 1
   */
  lists?: number
  /**
   * Most k-means iterations; training stops earlier when no vector changes list.
   * @default 20
   */
  iterations?: number
  /**
   * k-means runs on a random sample of at most this many vectors per list.
   * @default 256
   */
  maxPointsPerList?: number
  /** @default 0 */
  seed?: number
  /** @default 'auto' */
  kernels?: KernelChoice
  onProgress?: (event: TrainProgressEvent) => void
}

export const DEFAULT_ITERATIONS = 20
export const DEFAULT_MAX_POINTS_PER_LIST = 256

/**
 * Train an IVF partition on `vectors` (a sample of the data is enough: vectors added later
 * are assigned to the nearest trained centroid).
 *
 * @example
 * ```ts
 * const spatialIndex = await trainSpatialIndex(vectors, { dim: 768, metric: 'cosine' })
 * ```
 */
export async function trainSpatialIndex(vectors: VectorsInput, options: TrainOptions): Promise<SpatialIndex> {
  options.signal?.throwIfAborted()
  const dim = checkDim(options.dim)
  const metric = checkMetric(options.metric)
  const data = toMatrix(vectors, dim, metric, 'training vector')
  const n = data.length / dim
  if (n === 0) throw new NotEnoughVectorsError(0, 1, 'training needs at least one vector')
  const lists =
    options.lists === undefined
      ? Math.max(1, Math.round(Math.sqrt(n)))
      : checkInteger('lists', options.lists, 1, 1 << 20)
  if (lists > n) {
    throw new NotEnoughVectorsError(
      n,
      lists,
      `k-means needs at least one training vector per list (lists: ${lists})`,
    )
  }
  const iterations = checkInteger('iterations', options.iterations ?? DEFAULT_ITERATIONS, 0, 1000)
  const maxPointsPerList = checkInteger(
    'maxPointsPerList',
    options.maxPointsPerList ?? DEFAULT_MAX_POINTS_PER_LIST,
    1,
    1 << 20,
  )
  const seed = checkInteger('seed', options.seed ?? 0, 0, 0xffffffff)
  const prng = new Prng(seed)

  // The sample, copied into its own rows (rows padded to a multiple of 4 for the kernels).
  const m = Math.min(n, lists * maxPointsPerList)
  const picked = m === n ? null : sampleIndices(n, m, prng)
  const sample = new Float32Array(m * dim)
  for (let i = 0; i < m; i++) {
    const from = picked === null ? i : picked[i]!
    sample.set(data.subarray(from * dim, (from + 1) * dim), i * dim)
  }

  const spherical = metric !== 'l2'
  const centroids = new Float32Array(lists * dim)
  const init = sampleIndices(m, lists, prng)
  for (let l = 0; l < lists; l++) {
    centroids.set(sample.subarray(init[l]! * dim, (init[l]! + 1) * dim), l * dim)
    if (spherical) normalizeRow(centroids, l * dim, dim)
  }

  const k = createKernels(options.kernels ?? 'auto')
  const dim4 = Math.ceil(dim / 4) * 4
  const centroidsOff = 0
  const rowOff = lists * dim4 * 4
  const scoresOff = rowOff + dim4 * 4
  k.reserve(scoresOff + lists * 4)

  const assignment = new Int32Array(m).fill(-1)
  const cost = new Float64Array(m)
  const counts = new Uint32Array(lists)
  const norms = new Float64Array(lists)
  const sums = new Float64Array(lists * dim)
  const sampleNorms = new Float64Array(m)
  for (let i = 0; i < m; i++) sampleNorms[i] = sqnorm(sample, i * dim, dim)

  let ran = 0
  for (let it = 0; it < iterations; it++) {
    options.signal?.throwIfAborted()
    // Assign every sample vector to its best centroid.
    const heap = k.f32()
    heap.fill(0, 0, rowOff >>> 2)
    for (let l = 0; l < lists; l++) {
      heap.set(centroids.subarray(l * dim, (l + 1) * dim), (centroidsOff >>> 2) + l * dim4)
      norms[l] = sqnorm(centroids, l * dim, dim)
    }
    let moved = 0
    counts.fill(0)
    for (let i = 0; i < m; i++) {
      heap.set(sample.subarray(i * dim, (i + 1) * dim), rowOff >>> 2)
      heap.fill(0, (rowOff >>> 2) + dim, (rowOff >>> 2) + dim4)
      k.dots(rowOff, centroidsOff, lists, dim4, scoresOff)
      const s = scoresOff >>> 2
      let best = 0
      let bestCost = Number.POSITIVE_INFINITY
      for (let l = 0; l < lists; l++) {
        const c = spherical ? -heap[s + l]! : norms[l]! - 2 * heap[s + l]!
        if (c < bestCost) {
          bestCost = c
          best = l
        }
      }
      if (assignment[i] !== best) moved++
      assignment[i] = best
      cost[i] = spherical ? bestCost : bestCost + sampleNorms[i]!
      counts[best]!++
    }
    ran = it + 1
    options.onProgress?.({ type: 'dreamdb:vector:kmeans', iteration: ran, iterations, moved })
    if (moved === 0) break

    // Move every centroid to the mean of its vectors (normalised when spherical).
    sums.fill(0)
    for (let i = 0; i < m; i++) {
      const base = assignment[i]! * dim
      for (let j = 0; j < dim; j++) sums[base + j]! += sample[i * dim + j]!
    }
    for (let l = 0; l < lists; l++) {
      if (counts[l] === 0) continue
      for (let j = 0; j < dim; j++) centroids[l * dim + j] = sums[l * dim + j]! / counts[l]!
      if (spherical) normalizeRow(centroids, l * dim, dim)
    }
    repairEmptyLists(centroids, dim, sample, assignment, cost, counts, spherical)
    // Let timers (and so abort signals) run between iterations.
    await new Promise<void>((resolve) => setImmediate(resolve))
  }

  return {
    kind: 'ivf',
    dim,
    metric,
    lists,
    centroids,
    training: { seed, iterations: ran, samples: m, maxPointsPerList },
  }
}

/**
 * Give every empty list the member of the currently largest list that sits farthest from
 * its centroid (taken out of that list). Lists can stay empty only when every remaining
 * candidate coincides with its centroid (duplicated data).
 */
function repairEmptyLists(
  centroids: Float32Array,
  dim: number,
  sample: Float32Array,
  assignment: Int32Array,
  cost: Float64Array,
  counts: Uint32Array,
  spherical: boolean,
): void {
  const lists = counts.length
  for (let e = 0; e < lists; e++) {
    if (counts[e] !== 0) continue
    let big = -1
    for (let l = 0; l < lists; l++) if (counts[l]! >= 2 && (big === -1 || counts[l]! > counts[big]!)) big = l
    if (big === -1) return
    let far = -1
    for (let i = 0; i < assignment.length; i++) {
      if (assignment[i] === big && (far === -1 || cost[i]! > cost[far]!)) far = i
    }
    if (far === -1) return
    centroids.set(sample.subarray(far * dim, (far + 1) * dim), e * dim)
    if (spherical) normalizeRow(centroids, e * dim, dim)
    assignment[far] = e
    cost[far] = Number.NEGATIVE_INFINITY
    counts[big]!--
    counts[e] = 1
  }
}

function sqnorm(data: Float32Array, offset: number, dim: number): number {
  let s = 0
  for (let j = 0; j < dim; j++) s += data[offset + j]! * data[offset + j]!
  return s
}

function normalizeRow(data: Float32Array, offset: number, dim: number): void {
  const n = Math.sqrt(sqnorm(data, offset, dim))
  if (n === 0) return
  for (let j = 0; j < dim; j++) data[offset + j] = data[offset + j]! / n
}
