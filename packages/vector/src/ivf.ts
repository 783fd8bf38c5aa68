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
import { KMEANS_PARAMS, kmeansScratch, writeKmeansParams } from './kernels/kmeans.js'
import type { Metric, SpatialIndex } from './model.js'
import { Prng, sampleIndices } from './prng.js'
import { checkDim, checkInteger, checkMetric, checkRows, toMatrix, type VectorsInput } from './vectors.js'

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
 * @internal Training's memory limits, changeable by tests: Elkan's per-vector, per-centroid
 * bounds are kept while they and the three lists x lists tables beside them (gaps, and the
 * centroids ordered by gap) come to at most `elkanMaxBounds` 4-byte entries (64 MiB); over
 * that, Hamerly's. Rows are scored against the centroids in blocks of about `blockBytes`
 * (at least 8 rows).
 */
export const kmeansTuning = { elkanMaxBounds: 1 << 24, blockBytes: 192 * 1024 }
/** More candidates than this from the loose bound, and the bound is tightened first. */
const TIGHTEN_OVER = 16
/**
 * A vector whose upper bound passes its centroid's this-many nearest others is scanned by the
 * `elkan` kernel (every list, two per SIMD step), not one gap-ordered list at a time in
 * JavaScript; both leave the same candidates (design/0004).
 */
const SCAN_SORTED = 8
const COUNT_FIELD = KMEANS_PARAMS.indexOf('count')

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
  // A flat Float32Array is checked where it lies and its sample copied once, straight into the
  // kernel heap (scaled to unit length under cosine by `checkRows`' factors, the bits
  // `toMatrix` would give): a normalised copy of all of it cost a tenth of a build.
  const flat = vectors instanceof Float32Array
  const scales = flat ? checkRows(vectors, dim, metric, 'training vector') : null
  const data = flat ? vectors : toMatrix(vectors, dim, metric, 'training vector')
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

  // The sample: every vector, or `m` distinct ones (copied into the heap below).
  const m = Math.min(n, lists * maxPointsPerList)
  const picked = m === n ? null : sampleIndices(n, m, prng)
  const spherical = metric !== 'l2'
  const centroids = new Float32Array(lists * dim)
  const init = sampleIndices(m, lists, prng)

  const k = createKernels(options.kernels ?? 'auto')
  const dim4 = Math.ceil(dim / 4) * 4
  // Sample vectors that fail the bounds are scored against every centroid a block at a time
  // (one `gemm`: the centroids stream from cache once per block, not once per vector); the
  // block's rows stay in L2 (`blockBytes` of them).
  const block = Math.max(8, Math.min(256, Math.floor(kmeansTuning.blockBytes / (dim4 * 4))))
  // A block's row offsets, or the candidates of one vector (up to lists of them).
  const rowsListed = Math.max(block, lists)
  // The heap: centroids, then the whole sample (rows padded to dim4, copied once), then the
  // byte offsets of a block's rows, then its scores (block x lists).
  const centroidsOff = 0
  const sampleOff = lists * dim4 * 4
  const xsOff = sampleOff + m * dim4 * 4
  const scoresOff = xsOff + rowsListed * 4
  const elkan = (m + 3 * lists) * lists <= kmeansTuning.elkanMaxBounds
  // Elkan's per-pair lower bounds, the centroids' drifts and gaps and one vector's candidates
  // lie on the heap for the `elkan` kernel (each padded by one entry: it reads pairs).
  // (the scores of a block, or those of the `kmeans` kernel's sixteen vectors)
  const scratch = kmeansScratch(lists)
  const lowerOff = Math.ceil((scoresOff + Math.max(block * lists * 4, scratch.scores)) / 8) * 8
  const driftOff = Math.ceil((lowerOff + (elkan ? m * lists * 4 + 8 : 0)) / 8) * 8
  const gapOff = driftOff + (elkan ? (lists + 1) * 8 : 0)
  const candOff = Math.ceil((gapOff + (elkan ? lists * lists * 4 + 8 : 0)) / 8) * 8
  // Then the per-vector and per-list state, where the `kmeans` kernel (one whole assignment
  // pass under Elkan's bounds) reads and writes it; JavaScript works on views of it.
  let end = candOff + (elkan ? scratch.candidates : 0)
  const place = (bytes: number): number => {
    const at = Math.ceil(end / 8) * 8
    end = at + bytes
    return at
  }
  const normsOff = place(lists * 8)
  const sampleNormsOff = place(m * 8)
  const halfOff = place(lists * 8)
  const upperOff = place(m * 8)
  const hamerlyOff = place(m * 8)
  const costOff = place(m * 8)
  const assignmentOff = place(m * 4)
  const countsOff = place(lists * 4)
  const sumsOff = place(lists * dim * 8)
  const byGapOff = place(elkan ? lists * lists * 4 : 0)
  const sortedGapOff = place(elkan ? lists * lists * 4 : 0)
  const paramsOff = place(KMEANS_PARAMS.length * 4)
  k.reserve(end)
  // The sample's rows on the heap (dim4 apart; `sample` views them) and their squared norms.
  const sample = k.f32()
  const sampleAt = (i: number): number => (sampleOff >>> 2) + i * dim4
  const sampleNorms = new Float64Array(sample.buffer, sampleNormsOff, m)
  for (let i = 0; i < m; i++) {
    const from = (picked === null ? i : picked[i]!) * dim
    const at = sampleAt(i)
    if (scales === null) sample.set(data.subarray(from, from + dim), at)
    else scaleRow(sample, at, data, from, dim, scales[from / dim]!)
    sampleNorms[i] = sqnorm(sample, at, dim)
  }
  for (let l = 0; l < lists; l++) {
    centroids.set(sample.subarray(sampleAt(init[l]!), sampleAt(init[l]!) + dim), l * dim)
    if (spherical) normalizeRow(centroids, l * dim, dim)
  }

  // Views of the heap (reserved once above, so they stay valid).
  const heapBuffer = k.f32().buffer
  const assignment = new Int32Array(heapBuffer, assignmentOff, m).fill(-1)
  const cost = new Float64Array(heapBuffer, costOff, m).fill(0)
  const counts = new Uint32Array(heapBuffer, countsOff, lists)
  const norms = new Float64Array(heapBuffer, normsOff, lists)
  const sums = new Float64Array(heapBuffer, sumsOff, lists * dim).fill(0)
  // Hamerly's bounds: a vector whose distance to its centroid (upper) cannot exceed its
  // distance to any other (lower, or half the gap to the nearest other centroid) keeps its list
  // without being compared with every centroid. Exact: the same assignments as comparing all.
  const upper = new Float64Array(heapBuffer, upperOff, m).fill(Number.POSITIVE_INFINITY)
  const lower = new Float64Array(heapBuffer, hamerlyOff, m).fill(0)
  const half = new Float64Array(heapBuffer, halfOff, lists).fill(0)
  const shift = new Float64Array(lists)
  // Elkan's bounds where they fit: a lower bound per vector and centroid (each loosened by its
  // own centroid's move, not the largest move), and the distances between centroids, so that a
  // vector failing Hamerly's test is compared only with the few centroids that could be nearer.
  // Hamerly's one lower bound alone skipped a quarter of the comparisons on 784-d pixels;
  // these skip most of them (design/0004).
  // Stored as the distance plus the centroid's total move so far (`drift`): the bound now is
  // stored - drift, and a move costs one add per centroid instead of one per vector and centroid.
  const drift = elkan ? new Float64Array(heapBuffer, driftOff, lists + 1).fill(0) : new Float64Array(lists)
  const centroidGap = elkan
    ? new Float32Array(heapBuffer, gapOff, lists * lists).fill(0)
    : new Float32Array(0)
  // Each centroid's others, nearest first (`byGap`, their gaps in `sortedGap`): a vector's scan
  // for candidates stops at the first centroid too far from its own to be nearer.
  const byGap = new Int32Array(heapBuffer, byGapOff, elkan ? lists * lists : 0)
  const sortedGap = new Float32Array(heapBuffer, sortedGapOff, elkan ? lists * lists : 0)
  // Sort keys, gap then list: a non-negative f32's bits order as its value, and lists < 2^20,
  // so bits * 2^20 + list is exact in a double and sorts without a comparator (a JS comparator
  // was called about 2.5 million times in training on 141 lists).
  const gapBits = new Uint32Array(centroidGap.buffer, centroidGap.byteOffset, centroidGap.length)
  const keys = new Float64Array(lists)
  const previous = new Float32Array(lists * dim)

  let ran = 0
  for (let it = 0; it < iterations; it++) {
    options.signal?.throwIfAborted()
    let heap = k.f32()
    heap.fill(0, 0, sampleOff >>> 2)
    let unit = true
    for (let l = 0; l < lists; l++) {
      heap.set(centroids.subarray(l * dim, (l + 1) * dim), (centroidsOff >>> 2) + l * dim4)
      norms[l] = sqnorm(centroids, l * dim, dim)
      if (Math.abs(norms[l]! - 1) > 1e-5) unit = false
    }
    // Spherical k-means ranks by <x, c>, which is the Euclidean order only for unit centroids
    // (a zero mean stays zero): without them every vector is compared with every centroid.
    // Elkan's bounds start pruning in the third iteration: in the second the centroids have
    // just moved from sample points to means, nearly every vector passed the loose bound
    // (94% of the pairs were scored on the Debian set), and scoring them one vector at a time
    // cost twice the block `gemm` (design/0004). Hamerly's, cheap to fail, start at once.
    const prune = it > (elkan ? 1 : 0) && (!spherical || unit)
    // The centroids against each other, a block of them at a time (lists x lists scores at
    // once would outgrow the heap at tens of thousands of lists).
    for (let first = 0; prune && first < lists; first += block) {
      const rows = Math.min(block, lists - first)
      const u32 = k.u32()
      for (let r = 0; r < rows; r++) u32[(xsOff >>> 2) + r] = centroidsOff + (first + r) * dim4 * 4
      k.gemm(xsOff, rows, centroidsOff, lists, dim4, scoresOff)
      heap = k.f32()
      for (let l = first; l < first + rows; l++) {
        let nearest = Number.POSITIVE_INFINITY
        for (let j = 0; j < lists; j++) {
          if (j === l) continue
          const d2 = norms[l]! + norms[j]! - 2 * heap[(scoresOff >>> 2) + (l - first) * lists + j]!
          if (d2 < nearest) nearest = d2
          if (elkan) centroidGap[l * lists + j] = Math.sqrt(Math.max(0, d2)) / 2
        }
        half[l] = Math.sqrt(Math.max(0, nearest)) / 2
        if (elkan) {
          for (let j = 0; j < lists; j++) keys[j] = gapBits[l * lists + j]! * 1048576 + j
          keys.sort()
          for (let j = 0; j < lists; j++) {
            const other = keys[j]! % 1048576
            byGap[l * lists + j] = other
            sortedGap[l * lists + j] = centroidGap[l * lists + other]!
          }
        }
      }
    }
    let moved = 0
    counts.fill(0)
    // The kernels' parameters for this iteration (`kscored` reads the block's size at COUNT_FIELD).
    writeKmeansParams(k, paramsOff, {
      m,
      lists,
      dim4,
      dim,
      spherical: spherical ? 1 : 0,
      sample: sampleOff,
      centroids: centroidsOff,
      norms: normsOff,
      sampleNorms: sampleNormsOff,
      lower: lowerOff,
      drift: driftOff,
      gaps: gapOff,
      byGap: byGapOff,
      sortedGap: sortedGapOff,
      half: halfOff,
      upper: upperOff,
      assignment: assignmentOff,
      cost: costOff,
      counts: countsOff,
      sums: sumsOff,
      candidates: candOff,
      scores: scoresOff,
      scan: SCAN_SORTED,
      tighten: TIGHTEN_OVER,
      rows: xsOff,
      count: 0,
      hamerly: hamerlyOff,
      // Not after the first iteration: the second scores every pair again (above).
      bounds: elkan && it > 0 ? 1 : 0,
    })
    // Score the pending block against every centroid and move its vectors, in sample order
    // (the lists' float sums see the same additions in the same order as one at a time), in
    // the `kscored` kernel: the per-row choice and bounds cost more in JavaScript than the
    // block's products (design/0004).
    let pending = 0
    const flush = (): void => {
      k.gemm(xsOff, pending, centroidsOff, lists, dim4, scoresOff)
      k.u32()[(paramsOff >>> 2) + COUNT_FIELD] = pending
      moved += k.kscored(paramsOff)
      pending = 0
    }
    if (prune && elkan) {
      // Lloyd's choice among the centroids the bounds leave (the lowest cost, the lowest list
      // on a tie), each compared as the full scan compares them, for every vector in one kernel
      // call (the per-vector bookkeeping cost more in JavaScript than the products; design/0004).
      // A vector's own centroid is scored only when some other passes the loose bound; when
      // more than TIGHTEN_OVER pass, the bound is tightened first; a bound past the centroid's
      // SCAN_SORTED nearest others tests every list, branch-free, otherwise the others go in
      // gap order until one is too far.
      moved = k.kmeans(paramsOff)
    }
    for (let i = 0; i < m && !(prune && elkan); i++) {
      const row = sampleOff + i * dim4 * 4
      const a = assignment[i]!
      if (prune) {
        const bound = Math.max(half[a]!, lower[i]!)
        if (upper[i]! > bound) {
          upper[i] = Math.sqrt(
            Math.max(0, sampleNorms[i]! + norms[a]! - 2 * k.dot(row, centroidsOff + a * dim4 * 4, dim4)),
          )
        }
        if (upper[i]! <= bound) {
          const u2 = upper[i]! * upper[i]!
          cost[i] = spherical ? (u2 - sampleNorms[i]! - norms[a]!) / 2 : u2
          counts[a]!++
          continue
        }
      }
      k.u32()[(xsOff >>> 2) + pending] = row
      if (++pending === block) flush()
    }
    if (pending > 0) flush()
    ran = it + 1
    options.onProgress?.({ type: 'dreamdb:vector:kmeans', iteration: ran, iterations, moved })
    if (moved === 0) break

    // Move every centroid to the mean of its vectors (normalised when spherical).
    previous.set(centroids)
    for (let l = 0; l < lists; l++) {
      if (counts[l] === 0) continue
      for (let j = 0; j < dim; j++) centroids[l * dim + j] = sums[l * dim + j]! / counts[l]!
      if (spherical) normalizeRow(centroids, l * dim, dim)
    }
    repairEmptyLists(centroids, dim, sample, sampleAt, assignment, cost, counts, spherical, upper, sums)
    // Each centroid's move loosens the bounds of the vectors around it.
    let most = 0
    let mostList = -1
    let next = 0
    for (let l = 0; l < lists; l++) {
      let d2 = 0
      for (let j = 0; j < dim; j++) {
        const d = centroids[l * dim + j]! - previous[l * dim + j]!
        d2 += d * d
      }
      const moveBy = Math.sqrt(d2)
      shift[l] = moveBy
      if (moveBy > most) {
        next = most
        most = moveBy
        mostList = l
      } else if (moveBy > next) next = moveBy
    }
    for (let i = 0; i < m; i++) {
      const a = assignment[i]!
      upper[i] = upper[i]! + shift[a]!
      lower[i] = lower[i]! - (a === mostList ? next : most)
    }
    if (elkan) {
      for (let l = 0; l < lists; l++) drift[l] = drift[l]! + shift[l]!
    }
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
  sampleAt: (i: number) => number,
  assignment: Int32Array,
  cost: Float64Array,
  counts: Uint32Array,
  spherical: boolean,
  upper: Float64Array,
  sums: Float64Array,
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
    centroids.set(sample.subarray(sampleAt(far), sampleAt(far) + dim), e * dim)
    if (spherical) normalizeRow(centroids, e * dim, dim)
    assignment[far] = e
    for (let j = 0; j < dim; j++) {
      sums[big * dim + j]! -= sample[sampleAt(far) + j]!
      sums[e * dim + j]! += sample[sampleAt(far) + j]!
    }
    upper[far] = Number.POSITIVE_INFINITY
    cost[far] = Number.NEGATIVE_INFINITY
    counts[big]!--
    counts[e] = 1
  }
}

/** dst[at + j] = src[from + j] * scale, j < dim (a small function, so that V8 optimises it). */
function scaleRow(
  dst: Float32Array,
  at: number,
  src: Float32Array,
  from: number,
  dim: number,
  scale: number,
): void {
  for (let j = 0; j < dim; j++) dst[at + j] = src[from + j]! * scale
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
