/**
 * The in-memory IVF-RaBitQ index: lists of codes in FastScan blocks on the kernel heap,
 * per-vector factors and ids in typed arrays, full vectors (when kept) on the heap too, and
 * the search loop: probe the nearest lists, estimate a whole block of distances at once,
 * and spend an extra-bits estimate or an exact distance only on vectors whose lower bound
 * can still beat the current k-th result.
 */
import { Codec, type EncodedRows } from './codec.js'
import { readCodeBlock } from './codes.js'
import { DimensionMismatchError, InvalidOptionError, RerankUnavailableError } from './errors.js'
import { Heap } from './heap.js'
import type { KernelChoice, KernelKind } from './kernels/kernels.js'
import { DEFAULT_EPSILON0, type SpatialIndex, type VectorCompressor } from './model.js'
import { nearestFirst } from './nearest-first.js'
import { Prng } from './prng.js'
import { checkRows, toMatrix, toQuery, type VectorInput, type VectorsInput } from './vectors.js'

export interface VectorIndexInit {
  spatialIndex: SpatialIndex
  compressor: VectorCompressor
  /**
   * Keep every vector's full-precision values (float32) beside its code, so that search can
   * rerank with exact distances. Costs 4 bytes per dimension per vector.
   * @default true
   */
  keepVectors?: boolean
  /** @default 'auto' (WebAssembly SIMD where available, else TypeScript) */
  kernels?: KernelChoice
  /**
   * Room to reserve per list (one entry per list of the spatial index): an index built from
   * stored code blocks whose list sizes are known up front then never grows a list (a grown
   * list is copied and the space it left compacted later).
   */
  listCapacity?: ArrayLike<number>
}

/** Ids of added vectors: uint64 values (DreamDB anchors), one per vector. */
export type IdsInput = BigUint64Array | readonly bigint[]

export interface AddOptions {
  /** @default the index's size before the call, plus 0, 1, 2, ... */
  ids?: IdsInput
}

export interface AddCodesOptions extends AddOptions {
  /** The block's full-precision vectors, in the same order; required when the index keeps vectors. */
  vectors?: VectorsInput
}

export interface SearchOptions {
  /** How many results. When fewer vectors match, fewer are returned. */
  k: number
  /**
   * How many lists to scan, nearest first: 1..lists.
   * @default min(lists, 16)
   */
  nprobe?: number
  /**
   * Return exact distances, computed on the kept full-precision vectors for every vector
   * whose estimated lower bound can still make the top k. Without it, results are ranked
   * and reported by the estimate (from the extra bits when the compressor has them).
   * @default whether the index keeps vectors
   */
  rerank?: boolean
  /** Only ids for which this returns true can be results. Called only for candidates. */
  filter?: (id: bigint) => boolean
  /**
   * Confidence of the error bound that gates reranking, in standard deviations of the
   * estimate's error: larger reranks more vectors and misses fewer. The bound is epsilon0
   * times the root sum of squares of |o - c| |q - c| sqrt(1/x0^2 - 1) / sqrt(D - 1) (the code's
   * error) and |o - c| step / (2 x0) (the query's rounding), doubled under l2; see
   * design/0004. At 3.5 under 0.1% of estimates fall outside it; the RaBitQ paper's 1.9
   * leaves about 5% outside.
   * @default 3.5
   */
  epsilon0?: number
}

export interface SearchStats {
  /** Lists scanned (empty lists are skipped and not counted). */
  lists: number
  /** Vectors whose distance was estimated from the 1-bit code. */
  estimated: number
  /** Vectors whose extra-bits estimate was computed (bits > 1). */
  refined: number
  /** Exact distances computed. */
  reranked: number
}

export interface SearchResult {
  /** Ids, closest first. */
  ids: BigUint64Array
  /**
   * Distances, smaller is closer: squared Euclidean (l2), negative inner product (ip) or
   * 1 - cosine similarity (cosine). Exact when reranked, estimates otherwise.
   */
  distances: Float32Array
  stats: SearchStats
}

/**
 * The results of `searchMany`: row i of `ids` and `distances` (k entries each, closest
 * first) belongs to query i; `counts[i]` of them are results, the rest of the row is id 0
 * at distance +Infinity (fewer vectors matched).
 */
export interface SearchManyResult {
  /** queries x k ids, row-major. */
  ids: BigUint64Array
  /** queries x k distances, row-major, as `search` reports them. */
  distances: Float32Array
  /** Results per query (k unless fewer vectors matched). */
  counts: Uint32Array
  /** Summed over the queries. */
  stats: SearchStats
}

/** An in-memory index over a trained spatial index and a compressor. Not thread-safe. */
export interface VectorIndex {
  readonly spatialIndex: SpatialIndex
  readonly compressor: VectorCompressor
  /** Number of vectors added. */
  readonly size: number
  readonly keepsVectors: boolean
  /** The kernels this index runs. */
  readonly kernels: KernelKind
  /** Vectors per list. */
  listSizes(): Uint32Array
  /** Encode and add vectors; each goes to the list of its nearest centroid. */
  add(vectors: VectorsInput, options?: AddOptions): void
  /** Add the vectors of a code block (from `encodeCodes`) without re-encoding them. */
  addCodes(block: Uint8Array, options?: AddCodesOptions): void
  search(query: VectorInput, options: SearchOptions): SearchResult
  /**
   * Search many queries with the same options: each gets exactly what `search` would
   * return, but the options are checked, the queries converted and the working memory set up
   * once for all of them, and the results come back as two matrices.
   */
  searchMany(queries: VectorsInput, options: SearchOptions): SearchManyResult
}

/**
 * An empty index. Vectors added to it are encoded against the spatial index's existing
 * centroids; retrain (a new spatial index) when the data drifts far from them.
 *
 * @example
 * ```ts
 * const index = createVectorIndex({ spatialIndex, compressor })
 * index.add(vectors)
 * const { ids, distances } = index.search(query, { k: 10, nprobe: 16 })
 * ```
 */
export function createVectorIndex(init: VectorIndexInit): VectorIndex {
  if (init === null || typeof init !== 'object') {
    throw new InvalidOptionError('init', init, 'must be { spatialIndex, compressor, keepVectors?, kernels? }')
  }
  return new MemoryVectorIndex(init)
}

export const DEFAULT_NPROBE = 16
/** Blocks per FastScan call (the output slot holds this many blocks' sums). */
const CHUNK_BLOCKS = 64
const BLOCK = 32
/**
 * Bytes of 1-bit factors per block of 32 vectors: 32 f32 each of `add`, `scale`, `err` and
 * `pop`, the layout the `screen` kernel reads (see #insert for what they hold).
 */
const FACTOR_BLOCK_BYTES = 512
/** Most exact distances per `distances` call. */
const RERANK_BATCH = 16
/**
 * Most queries per batch of `searchMany`'s list-by-list FastScan, and most bytes of their
 * tables and sums (4 bytes per vector of each probed list): a batch should hold several
 * queries per list (500 queries probing 4 of 245 lists each hold about 8) and stay in cache.
 */
const BATCH_QUERIES = 1024
const BATCH_BYTES = 4 << 20
/** Seed of the fixed dither of the query's randomized rounding (so a query always gives the same answer). */
const DITHER_SEED = 0x9e3779b9

interface Region {
  off: number
  bytes: number
}

interface List {
  count: number
  capacity: number
  codes: Region
  /** The 1-bit factors, FACTOR_BLOCK_BYTES per block of 32 vectors. */
  factors: Region
  ex: Region | null
  vectors: Region | null
  ids: BigUint64Array
  /** `ids` as pairs of u32 words (copying a result's id this way makes no BigInt). */
  ids32: Uint32Array
  scaleEx: Float32Array
  errEx: Float32Array
  /** |o - c| / (2 x0ex): the extra-bits estimate's sensitivity to query rounding. */
  qErrEx: Float32Array
  /** The `add` factor of the extra-bit estimate (|r|^2 under l2, -<o - c, c> otherwise), bits > 1. */
  addEx: Float32Array
  sumU: Float32Array
}

class MemoryVectorIndex implements VectorIndex {
  readonly spatialIndex: SpatialIndex
  readonly compressor: VectorCompressor
  readonly keepsVectors: boolean
  readonly #codec: Codec
  readonly #lists: List[] = []
  readonly #live = new Set<Region>()
  readonly #D: number
  readonly #groups: number
  readonly #blockBytes: number
  readonly #pairs: number
  readonly #exStride: number
  readonly #vecStride: number
  readonly #lutOff: number
  readonly #sumsOff: number
  readonly #qPlanesOff: number
  readonly #queryOff: number
  readonly #rotatedQueryOff: number
  readonly #rotatedCentroidsOff: number
  readonly #qprimeOff: number
  readonly #ditherOff: number
  readonly #statsOff: number
  /**
   * The mean of the rotated centroids, P m (f32, D values): the query's one FastScan table
   * rounds P q - P m, whose range (the rounding step) is about that of q - c rather than of q.
   */
  readonly #centerOff: number
  /** A probed list's own q' = P q - P c (f64), its 4-bit table and statistics: the extra-bit pass only. */
  readonly #listQprimeOff: number
  readonly #listLutOff: number
  readonly #listStatsOff: number
  readonly #paramsOff: number
  readonly #candidateIdOff: number
  readonly #candidateEstOff: number
  readonly #candidateBoundOff: number
  readonly #rerankRowsOff: number
  readonly #rerankOutOff: number
  /**
   * The coarse probe (#probe): the centroids rounded to i16 (`#dim8` values a row), the query
   * as f32 and as i16, the i16 dot products, the rows and exact scores of the lists that may
   * be among the nearest, and the query's rounding (max |q|, its scale).
   */
  readonly #dim8: number
  readonly #c16Off: number
  readonly #q32Off: number
  readonly #q16Off: number
  readonly #probeOutOff: number
  readonly #probeRowsOff: number
  readonly #probeScoresOff: number
  readonly #probeStatsOff: number
  /**
   * `probebound`'s table (per list, f64, `#probeStride` apart: the i16 row's scale, its slack,
   * its weight, sum |c| and |c|^2), its scratch for the nprobe smallest highest keys, the lists
   * it leaves (u32) and its parameters.
   */
  readonly #probeStride: number
  readonly #probeTableOff: number
  readonly #probeBestOff: number
  readonly #probeCandidatesOff: number
  readonly #probeParamsOff: number
  /** The coarse probe's ranking, reused (a fresh heap and array per query cost 5% of searchMany). */
  readonly #rankKeys: Float64Array
  readonly #ranked: Uint32Array
  /**
   * A second query's f32 and i16 rows, i16 scores and rounding (laid out as from `#q32Off`
   * to `#probeRowsOff`, then its 16 bytes of statistics): searchMany scores two queries'
   * centroids at once (`dots16x2`) and moves the second's into place for its turn.
   */
  readonly #probeSecondOff: number
  /** Largest |value| of a rounded query (and centroid) coordinate: no i32 lane of `dots16` can overflow. */
  readonly #qmax: number
  /** Per list: the i16 row's scale, sum |c - scale c̃|, scale sum |c̃|, sum |c|. */
  readonly #c16Scale: Float64Array
  readonly #c16Slack: Float64Array
  readonly #c16Weight: Float64Array
  readonly #cL1: Float64Array
  readonly #probeLists: Uint32Array
  readonly #probeKeys: Float64Array
  readonly #regionBase: number
  #end: number
  /** The highest `#end` so far: the heap past it has never been written. */
  #highWater = 0
  #garbage = 0
  #size = 0
  readonly #dither8Off: number
  readonly #rotatedQuery: Float32Array
  /** A query's score against every centroid, and the key lists are ranked by (reused). */
  readonly #dots: Float32Array
  readonly #keys: Float64Array
  /** A query's probed lists' centroid scores, in probe order, and its table's figures (`#prepare`). */
  readonly #probeDots: Float32Array
  readonly #prepared = new Float64Array(4)
  /** P c - P m per list (f64), and its sum, for the `add` factor. */
  readonly #centered: Float64Array
  readonly #centroidSums: Float64Array
  /** Positions (in the list being scanned) of the rows queued for reranking. */
  readonly #pendingPositions = new Uint32Array(RERANK_BATCH)
  /**
   * A chunk's vectors waiting for an exact distance: lower bound and position, as screened,
   * then a min-heap by (lower bound, position) in place.
   */
  readonly #queuedLower = new Float64Array(CHUNK_BLOCKS * BLOCK)
  readonly #queuedPositions = new Uint32Array(CHUNK_BLOCKS * BLOCK)
  /** The lower bounds of the first rerank batch of a list, ascending (with #pendingPositions). */
  readonly #firstLower = new Float64Array(RERANK_BATCH)

  constructor(init: VectorIndexInit) {
    this.#codec = new Codec(init.spatialIndex, init.compressor, init.kernels ?? 'auto')
    this.spatialIndex = init.spatialIndex
    this.compressor = init.compressor
    this.keepsVectors = init.keepVectors ?? true
    const D = init.compressor.paddedDim
    this.#D = D
    this.#groups = D / 4
    this.#blockBytes = this.#groups * 16
    this.#pairs = Math.ceil(D / 128)
    this.#exStride = init.compressor.bits * this.#pairs * 16
    this.#vecStride = this.#codec.dim4 * 4
    const lists = init.spatialIndex.lists
    // Every slot is a multiple of 16 bytes (D is a multiple of 64), so f64 slots stay aligned.
    this.#lutOff = this.#codec.heapEnd
    this.#sumsOff = this.#lutOff + this.#blockBytes
    this.#qPlanesOff = this.#sumsOff + CHUNK_BLOCKS * BLOCK * 4
    this.#queryOff = this.#qPlanesOff + 8 * this.#pairs * 16
    this.#rotatedQueryOff = this.#queryOff + this.#vecStride
    this.#rotatedCentroidsOff = this.#rotatedQueryOff + D * 4
    this.#qprimeOff = this.#rotatedCentroidsOff + lists * D * 4
    this.#ditherOff = this.#qprimeOff + D * 8
    this.#dither8Off = this.#ditherOff + D * 8
    this.#statsOff = this.#dither8Off + D * 8
    this.#centerOff = this.#statsOff + 64
    this.#listQprimeOff = this.#centerOff + D * 4
    this.#listLutOff = this.#listQprimeOff + D * 8
    this.#listStatsOff = this.#listLutOff + this.#blockBytes
    this.#paramsOff = this.#listStatsOff + 64
    this.#candidateIdOff = this.#paramsOff + 64
    this.#candidateEstOff = this.#candidateIdOff + CHUNK_BLOCKS * BLOCK * 4
    this.#candidateBoundOff = this.#candidateEstOff + CHUNK_BLOCKS * BLOCK * 8
    this.#rerankRowsOff = this.#candidateBoundOff + CHUNK_BLOCKS * BLOCK * 8
    this.#rerankOutOff = this.#rerankRowsOff + RERANK_BATCH * 4
    const dim = init.compressor.dim
    const dim8 = Math.ceil(dim / 8) * 8
    this.#dim8 = dim8
    const align16 = (n: number) => Math.ceil(n / 16) * 16
    this.#c16Off = this.#rerankOutOff + RERANK_BATCH * 4
    this.#q32Off = this.#c16Off + lists * dim8 * 2
    this.#q16Off = this.#q32Off + dim8 * 4
    this.#probeOutOff = this.#q16Off + dim8 * 2
    this.#probeRowsOff = this.#probeOutOff + align16(lists * 8)
    this.#probeScoresOff = this.#probeRowsOff + align16(lists * 4)
    this.#probeStatsOff = this.#probeScoresOff + align16(lists * 4)
    this.#probeStride = lists + (lists & 1)
    this.#probeTableOff = this.#probeStatsOff + 16
    this.#probeBestOff = this.#probeTableOff + 5 * this.#probeStride * 8
    this.#probeCandidatesOff = this.#probeBestOff + align16(lists * 8)
    this.#probeParamsOff = this.#probeCandidatesOff + align16(lists * 4)
    this.#probeSecondOff = this.#probeParamsOff + 64
    this.#regionBase = this.#probeSecondOff + (this.#probeRowsOff - this.#q32Off) + 16
    this.#end = this.#regionBase
    const k = this.#codec.k
    k.reserve(this.#end)
    k.f32().set(this.#codec.rotatedCentroids, this.#rotatedCentroidsOff >>> 2)
    // One fixed dither per index for each rounding: unbiased over the dither, the same answer every time.
    const prng = new Prng(DITHER_SEED)
    const dither4 = k.f64().subarray(this.#ditherOff >>> 3, (this.#ditherOff >>> 3) + D)
    for (let j = 0; j < D; j++) dither4[j] = prng.next()
    const dither8 = k.f64().subarray(this.#dither8Off >>> 3, (this.#dither8Off >>> 3) + D)
    for (let j = 0; j < D; j++) dither8[j] = prng.next()
    this.#rotatedQuery = new Float32Array(D)
    const rc = this.#codec.rotatedCentroids
    const center = k.f32().subarray(this.#centerOff >>> 2, (this.#centerOff >>> 2) + D)
    for (let j = 0; j < D; j++) {
      let sum = 0
      for (let l = 0; l < lists; l++) sum += rc[l * D + j]!
      center[j] = sum / lists
    }
    this.#centered = new Float64Array(lists * D)
    this.#centroidSums = new Float64Array(lists)
    for (let l = 0; l < lists; l++) {
      let sum = 0
      for (let j = 0; j < D; j++) {
        const x = rc[l * D + j]! - center[j]!
        this.#centered[l * D + j] = x
        sum += x
      }
      this.#centroidSums[l] = sum
    }
    this.#dots = new Float32Array(lists)
    // Each i32 lane of `dots16` sums dim8 / 4 products of at most qmax^2.
    this.#qmax = Math.min(32767, Math.floor(Math.sqrt((0.99 * 2 ** 31) / (dim8 / 4))))
    this.#c16Scale = new Float64Array(lists)
    this.#c16Slack = new Float64Array(lists)
    this.#c16Weight = new Float64Array(lists)
    this.#cL1 = new Float64Array(lists)
    this.#probeLists = new Uint32Array(lists)
    this.#probeKeys = new Float64Array(lists)
    {
      const centroids = init.spatialIndex.centroids
      const i16 = new Int16Array(k.u8().buffer, this.#c16Off, lists * dim8)
      for (let l = 0; l < lists; l++) {
        let m = 0
        let l1 = 0
        for (let j = 0; j < dim; j++) {
          const x = Math.abs(centroids[l * dim + j]!)
          m = Math.max(m, x)
          l1 += x
        }
        const scale = m / this.#qmax
        let slack = 0
        let weight = 0
        for (let j = 0; j < dim; j++) {
          const x = centroids[l * dim + j]!
          const r = scale > 0 ? Math.max(-this.#qmax, Math.min(this.#qmax, Math.round(x / scale))) : 0
          i16[l * dim8 + j] = r
          slack += Math.abs(x - scale * r)
          weight += Math.abs(r)
        }
        this.#c16Scale[l] = scale
        this.#c16Slack[l] = slack
        this.#c16Weight[l] = scale * weight
        this.#cL1[l] = l1
      }
      const table = k.f64()
      const at = this.#probeTableOff >>> 3
      const stride = this.#probeStride
      table.set(this.#c16Scale, at)
      table.set(this.#c16Slack, at + stride)
      table.set(this.#c16Weight, at + 2 * stride)
      table.set(this.#cL1, at + 3 * stride)
      table.set(this.#codec.centroidNorms, at + 4 * stride)
    }
    this.#keys = new Float64Array(lists)
    this.#rankKeys = new Float64Array(lists)
    this.#ranked = new Uint32Array(lists)
    this.#probeDots = new Float32Array(lists)
    const room = init.listCapacity
    if (room !== undefined && (room === null || typeof room !== 'object' || room.length !== lists)) {
      throw new InvalidOptionError('listCapacity', room, `must give a size for each of the ${lists} lists`)
    }
    const capacity = new Float64Array(lists)
    let bytes = 0
    const region = (n: number) => Math.ceil(n / 16) * 16
    for (let l = 0; l < lists; l++) {
      const wanted = room === undefined ? 0 : room[l]!
      if (!Number.isInteger(wanted) || wanted < 0 || wanted > 0xffffffff) {
        throw new InvalidOptionError(`listCapacity[${l}]`, wanted, 'must be an integer >= 0')
      }
      const c = Math.ceil(wanted / BLOCK) * BLOCK
      capacity[l] = c
      bytes += region((c / BLOCK) * this.#blockBytes) + region((c / BLOCK) * FACTOR_BLOCK_BYTES)
      if (init.compressor.bits > 1) bytes += region(c * this.#exStride)
      if (this.keepsVectors) bytes += region(c * this.#vecStride)
    }
    // The reserved lists' heap in one step: growing it list by list (by half each time) cost
    // about a tenth of a 60,000-vector build.
    k.reserve(this.#end + bytes)
    for (let l = 0; l < lists; l++) this.#lists.push(this.#newList(capacity[l]!))
  }

  get size(): number {
    return this.#size
  }

  get kernels(): KernelKind {
    return this.#codec.k.kind
  }

  listSizes(): Uint32Array {
    return Uint32Array.from(this.#lists, (l) => l.count)
  }

  add(vectors: VectorsInput, options?: AddOptions): void {
    const data = toMatrix(vectors, this.compressor.dim, this.compressor.metric, 'vector')
    const count = data.length / this.compressor.dim
    const ids = this.#ids(options?.ids, count)
    const rows = this.#codec.encode(data, count)
    this.#insert(rows, ids, this.keepsVectors ? data : null)
  }

  addCodes(block: Uint8Array, options?: AddCodesOptions): void {
    const rows = readCodeBlock(this.spatialIndex, this.compressor, block)
    const ids = this.#ids(options?.ids, rows.count)
    let data: Float32Array | null = null
    let scales: Float64Array | null = null
    if (this.keepsVectors) {
      const { vectors } = options ?? {}
      if (vectors === undefined) {
        throw new InvalidOptionError(
          'vectors',
          undefined,
          'this index keeps full-precision vectors for reranking (keepVectors: true), so addCodes needs them',
        )
      }
      const { dim, metric } = this.compressor
      // A flat array is checked where it lies and copied once, into the heap (a build from
      // stored blocks spent a tenth of its time copying them first).
      if (vectors instanceof Float32Array) {
        scales = checkRows(vectors, dim, metric, 'vector')
        data = vectors
      } else data = toMatrix(vectors, dim, metric, 'vector')
      if (data.length / dim !== rows.count) {
        throw new DimensionMismatchError(
          'vectors given with the code block (count)',
          rows.count,
          data.length / dim,
        )
      }
    }
    this.#insert(rows, ids, data, scales)
  }

  #ids(ids: IdsInput | undefined, count: number): BigUint64Array {
    if (ids === undefined) {
      const out = new BigUint64Array(count)
      for (let i = 0; i < count; i++) out[i] = BigInt(this.#size + i)
      return out
    }
    if (ids instanceof BigUint64Array) {
      if (ids.length !== count) throw new DimensionMismatchError('ids (count)', count, ids.length)
      return ids
    }
    if (!Array.isArray(ids))
      throw new InvalidOptionError('ids', typeof ids, 'must be a BigUint64Array or bigint[]')
    if (ids.length !== count) throw new DimensionMismatchError('ids (count)', count, ids.length)
    const out = new BigUint64Array(count)
    for (let i = 0; i < count; i++) {
      const id = ids[i]
      if (typeof id !== 'bigint' || id < 0n || id > 0xffffffffffffffffn) {
        throw new InvalidOptionError(`ids[${i}]`, id, 'must be a bigint from 0 to 2^64 - 1')
      }
      out[i] = id
    }
    return out
  }

  // ---- storage -------------------------------------------------------------------------

  #alloc(bytes: number): Region {
    const region = { off: this.#end, bytes: Math.ceil(bytes / 16) * 16 }
    this.#end += region.bytes
    this.#codec.k.reserve(this.#end)
    // Memory past the highest end ever used is still as the heap grew it: zeros. Filling it
    // would only touch fresh pages twice (a large index's first build spent ~15% of it here).
    const used = Math.min(region.off + region.bytes, this.#highWater)
    if (used > region.off) this.#codec.k.u8().fill(0, region.off, used)
    this.#highWater = Math.max(this.#highWater, this.#end)
    this.#live.add(region)
    return region
  }

  #release(region: Region | null): void {
    if (region === null) return
    this.#live.delete(region)
    this.#garbage += region.bytes
  }

  /** Slide live regions down over the garbage left by lists that grew. */
  #compact(): void {
    const u8 = this.#codec.k.u8()
    let end = this.#regionBase
    for (const region of [...this.#live].sort((a, b) => a.off - b.off)) {
      if (region.off !== end) u8.copyWithin(end, region.off, region.off + region.bytes)
      region.off = end
      end += region.bytes
    }
    this.#end = end
    this.#garbage = 0
  }

  #newList(capacity: number): List {
    const bits = this.compressor.bits
    const ids = new BigUint64Array(capacity)
    return {
      count: 0,
      capacity,
      codes: this.#alloc((capacity / BLOCK) * this.#blockBytes),
      factors: this.#alloc((capacity / BLOCK) * FACTOR_BLOCK_BYTES),
      ex: bits > 1 ? this.#alloc(capacity * this.#exStride) : null,
      vectors: this.keepsVectors ? this.#alloc(capacity * this.#vecStride) : null,
      ids,
      ids32: new Uint32Array(ids.buffer, ids.byteOffset, 2 * capacity),
      scaleEx: new Float32Array(bits > 1 ? capacity : 0),
      errEx: new Float32Array(bits > 1 ? capacity : 0),
      qErrEx: new Float32Array(bits > 1 ? capacity : 0),
      addEx: new Float32Array(bits > 1 ? capacity : 0),
      sumU: new Float32Array(bits > 1 ? capacity : 0),
    }
  }

  #grow(l: number, needed: number): void {
    const old = this.#lists[l]!
    if (needed <= old.capacity) return
    let capacity = Math.max(BLOCK, old.capacity)
    while (capacity < needed) capacity *= 2
    const next = this.#newList(capacity)
    const u8 = this.#codec.k.u8()
    const copy = (from: Region | null, to: Region | null): void => {
      if (from !== null && to !== null) u8.copyWithin(to.off, from.off, from.off + from.bytes)
    }
    copy(old.codes, next.codes)
    copy(old.factors, next.factors)
    copy(old.ex, next.ex)
    copy(old.vectors, next.vectors)
    for (const key of ['ids', 'scaleEx', 'errEx', 'qErrEx', 'sumU', 'addEx'] as const) {
      ;(next[key] as unknown as Float32Array).set(old[key] as unknown as Float32Array)
    }
    next.count = old.count
    this.#release(old.codes)
    this.#release(old.factors)
    this.#release(old.ex)
    this.#release(old.vectors)
    this.#lists[l] = next
  }

  /** `scales`: each row of `data` is scaled by its entry as it is copied (unit length under cosine). */
  #insert(
    rows: EncodedRows,
    ids: BigUint64Array,
    data: Float32Array | null,
    scales: Float64Array | null = null,
  ): void {
    const counts = new Uint32Array(this.#lists.length)
    for (let i = 0; i < rows.count; i++) counts[rows.lists[i]!]!++
    for (let l = 0; l < counts.length; l++) {
      if (counts[l]! > 0) this.#grow(l, this.#lists[l]!.count + counts[l]!)
    }
    const D = this.#D
    const dim = this.compressor.dim
    const bits = this.compressor.bits
    const exBits = bits - 1
    const l2 = this.compressor.metric === 'l2'
    const sqrtD = Math.sqrt(D)
    const sqrtD1 = Math.sqrt(D - 1)
    const planeBytes = D / 8
    const half = ((1 << bits) - 1) / 2
    const u8 = this.#codec.k.u8()
    const f32 = this.#codec.k.f32()
    const centered = this.#centered
    for (let i = 0; i < rows.count; i++) {
      const list = this.#lists[rows.lists[i]!]!
      const v = list.count++
      list.ids[v] = ids[i]!
      const norm = rows.norm[i]!
      const x0 = rows.x0[i]!
      // Factors of the 1-bit estimate est = add + offset + scale (2 lo pop + 2 delta sum - sum q̂)
      // (`screen`, with <r, q'> ~ |r| / (sqrt(D) x0) of the bracket): under l2 |o - q|^2 =
      // |r|^2 + |q'|^2 - 2 <r, q'>, otherwise -<o, q> = offset - radial - <r, q'>. The signs and
      // l2's factor 2 go into add and scale here, and the bound's factor 2 under l2 into err.
      const factors = (list.factors.off >>> 2) + (v >>> 5) * (FACTOR_BLOCK_BYTES >>> 2) + (v & 31)
      const add = l2 ? norm * norm : -rows.radial[i]!
      const scale = -(l2 ? 2 : 1) * (norm / (sqrtD * x0))
      // One FastScan table per query, not per probed list: the table rounds P q - P m, and the
      // list's part of sqrt(D) <x̄, P q - P c> = (2 <b, P q - P m> - sum (P q - P m)) -
      // (2 <b, P c - P m> - sum (P c - P m)) is a constant of the vector, folded into `add` here.
      const signBase = i * planeBytes
      const c = rows.lists[i]! * D
      // One pass over the sign bytes: the FastScan nibbles (nibble g of vector v goes to byte
      // g*16 + (lane & 15), high half for lanes 16-31), the popcount, and <b, P c> (set bits
      // in increasing order).
      const block = list.codes.off + (v >>> 5) * this.#blockBytes
      const lane = v & 31
      const shift = lane < 16 ? 0 : 4
      let pop = 0
      let bc = 0
      for (let b = 0; b < planeBytes; b++) {
        const byte = rows.signs[signBase + b]!
        const at = block + b * 32 + (lane & 15)
        u8[at]! |= (byte & 15) << shift
        u8[at + 16]! |= (byte >>> 4) << shift
        pop += popcount8(byte)
        // Each bit times its coordinate, one addition per bit in increasing order: a clear bit
        // adds a zero, which leaves the sum unchanged, so this is the sum over the set bits
        // without a loop that mispredicted its exit on every byte.
        const k = c + b * 8
        bc += (byte & 1) * centered[k]!
        bc += ((byte >>> 1) & 1) * centered[k + 1]!
        bc += ((byte >>> 2) & 1) * centered[k + 2]!
        bc += ((byte >>> 3) & 1) * centered[k + 3]!
        bc += ((byte >>> 4) & 1) * centered[k + 4]!
        bc += ((byte >>> 5) & 1) * centered[k + 5]!
        bc += ((byte >>> 6) & 1) * centered[k + 6]!
        bc += (byte >>> 7) * centered[k + 7]!
      }
      f32[factors] = add - scale * (2 * bc - this.#centroidSums[rows.lists[i]!]!)
      f32[factors + 32] = scale
      f32[factors + 64] = ((l2 ? 2 : 1) * (norm * Math.sqrt(Math.max(0, 1 / (x0 * x0) - 1)))) / sqrtD1
      f32[factors + 96] = pop
      if (exBits > 0) {
        // Planes 0 .. exBits-1 then the sign plane, each padded to whole 16-byte chunks.
        const at = list.ex!.off + v * this.#exStride
        const stride = this.#pairs * 16
        const exBase = i * exBits * planeBytes
        for (let p = 0; p < exBits; p++) {
          u8.set(rows.ex.subarray(exBase + p * planeBytes, exBase + (p + 1) * planeBytes), at + p * stride)
        }
        u8.set(rows.signs.subarray(signBase, signBase + planeBytes), at + exBits * stride)
        let sumU = 0
        let y2 = 0
        for (let j = 0; j < D; j++) {
          let u = ((rows.signs[signBase + (j >>> 3)]! >>> (j & 7)) & 1) << exBits
          for (let p = 0; p < exBits; p++)
            u |= ((rows.ex[exBase + p * planeBytes + (j >>> 3)]! >>> (j & 7)) & 1) << p
          sumU += u
          y2 += (u - half) * (u - half)
        }
        const x0ex = rows.x0ex[i]!
        list.sumU[v] = sumU
        list.scaleEx[v] = norm / (Math.sqrt(y2) * x0ex)
        list.errEx[v] = (norm * Math.sqrt(Math.max(0, 1 / (x0ex * x0ex) - 1))) / sqrtD1
        list.qErrEx[v] = norm / (2 * x0ex)
        list.addEx[v] = add
      }
      if (data !== null) {
        const at = (list.vectors!.off + v * this.#vecStride) >>> 2
        f32.set(data.subarray(i * dim, (i + 1) * dim), at)
        if (scales !== null) for (let j = 0, s = scales[i]!; j < dim; j++) f32[at + j] = f32[at + j]! * s
      }
    }
    this.#size += rows.count
    let live = 0
    for (const region of this.#live) live += region.bytes
    if (this.#garbage > Math.max(live / 2, 1 << 20)) this.#compact()
  }

  // ---- search --------------------------------------------------------------------------

  search(query: VectorInput, options: SearchOptions): SearchResult {
    const { k, nprobe, rerank, epsilon0, filter } = this.#checkSearch(options)
    const q = toQuery(query, this.compressor.dim, this.compressor.metric)
    const stats: SearchStats = { lists: 0, estimated: 0, refined: 0, reranked: 0 }
    const top = topK(k)
    if (this.#size > 0) this.#search(q, nprobe, rerank, epsilon0, filter, top, stats)
    const ids = new BigUint64Array(top.size)
    const distances = new Float32Array(top.size)
    nearestOf(top, this.#lists, new Uint32Array(ids.buffer), distances, 0)
    return { ids, distances, stats }
  }

  /**
   * Every query goes through the steps `search` takes, with the same numbers, so each gets
   * exactly `search`'s answer (design/0004, "Batched search"). What is shared: the centroid
   * scores (one `gemm` per block of queries) and the FastScan pass, run list by list for a
   * batch of queries (a list's codes are read once for every query in the batch that probes
   * it, two queries per kernel call) into sums kept per query and probed list. FastScan's
   * sums are integers that depend on the query and the list only, not on what was found
   * before, so computing them early changes nothing; then each query screens, reranks and
   * keeps its top k over its own lists, nearest first, as `search` does.
   */
  searchMany(queries: VectorsInput, options: SearchOptions): SearchManyResult {
    const { k, nprobe, rerank, epsilon0, filter } = this.#checkSearch(options)
    const dim = this.compressor.dim
    const metric = this.compressor.metric
    // A flat Float32Array is checked where it lies and read in place (under l2 and ip a
    // query is used as given; copying 500 Fashion-MNIST queries cost 3% of a call).
    let data: Float32Array
    if (queries instanceof Float32Array && metric !== 'cosine') {
      checkRows(queries, dim, metric, 'query')
      data = queries
    } else data = toMatrix(queries, dim, metric, 'query')
    const count = data.length / dim
    const stats: SearchStats = { lists: 0, estimated: 0, refined: 0, reranked: 0 }
    const ids = new BigUint64Array(count * k)
    const distances = new Float32Array(count * k).fill(Number.POSITIVE_INFINITY)
    const counts = new Uint32Array(count)
    if (this.#size === 0 || count === 0) return { ids, distances, counts, stats }
    const top = topK(k)
    const words = new Uint32Array(ids.buffer)
    const codec = this.#codec
    const kern = codec.k
    const lists = this.spatialIndex.lists
    const D = this.#D
    const exBits = this.compressor.bits - 1
    const blockBytes = this.#blockBytes
    const batchMax = Math.min(count, BATCH_QUERIES)
    // Per query of a batch: its probed lists nearest first, their centroid scores, where its
    // sums for each lie on the heap, and its FastScan table's figures (lo, delta, sum, |q|^2).
    const order = new Uint32Array(batchMax * nprobe)
    const probeDots = new Float32Array(batchMax * nprobe)
    const sums = new Uint32Array(batchMax * nprobe)
    const luts = new Uint32Array(batchMax)
    const prepared = new Float64Array(batchMax * 4)
    const rotated = exBits > 0 ? new Float32Array(batchMax * D) : null
    // The batch's (query, probe) pairs by list, for the list-by-list FastScan pass.
    const listStart = new Uint32Array(lists + 1)
    const pairs = new Uint32Array(batchMax * nprobe)
    // The batch's tables and sums live on the heap past the index's regions (nothing is
    // allocated while a search runs).
    const scratch = this.#end
    const scores = new Float32Array(codec.block * lists)
    let scoredFirst = 0
    let scoredRows = 0
    // |q|^2 of four queries at a time (each summed in its own order, as `search` sums it).
    const squares = new Float64Array(4)
    let squaredFirst = -4
    let first = 0
    let batch = 0
    let used = 0
    const flush = (): void => {
      this.#fastscanBatch(batch, nprobe, order, sums, luts, listStart, pairs)
      for (let j = 0; j < batch; j++) {
        const i = first + j
        if (rotated !== null) {
          kern.f32().set(rotated.subarray(j * D, (j + 1) * D), this.#rotatedQueryOff >>> 2)
        }
        this.#scan(
          data.subarray(i * dim, (i + 1) * dim),
          nprobe,
          order,
          probeDots,
          sums,
          j * nprobe,
          prepared,
          j * 4,
          rerank,
          epsilon0,
          filter,
          top,
          stats,
          undefined,
        )
        counts[i] = top.size
        nearestOf(top, this.#lists, words, distances, i * k)
      }
      first += batch
      batch = 0
      used = 0
    }
    // The coarse probe per query where nprobe is under a third of the lists (#probe); else
    // the queries' centroid scores a block at a time, with one `gemm` per block (the centroids
    // stream from cache once per block, not once per query; the bits of one query at a time).
    const coarse = nprobe * 3 <= lists
    for (let i = 0; i < count; i++) {
      let ranked: Uint32Array
      if (coarse) {
        // Two queries' centroid scores at a time; the second's wait in their own slot.
        let scored: 0 | 1 | 2 = 0
        if (i % 2 === 1) scored = 2
        else if (i + 1 < count) {
          this.#scorePair(data.subarray(i * dim, (i + 1) * dim), data.subarray((i + 1) * dim, (i + 2) * dim))
          scored = 1
        }
        ranked = this.#probe(data.subarray(i * dim, (i + 1) * dim), nprobe, scored)
      } else {
        if (i >= scoredFirst + scoredRows) {
          scoredFirst = i
          scoredRows = Math.min(codec.block, count - i)
          codec.scoreBlock(data, i, scoredRows)
          const at = codec.blockScoresOff >>> 2
          scores.set(kern.f32().subarray(at, at + scoredRows * lists))
        }
        const r = i - scoredFirst
        this.#dots.set(scores.subarray(r * lists, (r + 1) * lists))
        ranked = this.#order(nprobe)
      }
      let bytes = blockBytes
      for (let p = 0; p < nprobe; p++) bytes += Math.ceil(this.#lists[ranked[p]!]!.count / BLOCK) * BLOCK * 4
      if (batch > 0 && (batch === batchMax || used + bytes > BATCH_BYTES)) flush()
      const j = batch++
      luts[j] = scratch + used
      used += blockBytes
      kern.reserve(scratch + used + bytes)
      // Written past the index's regions from here on: a list allocated there later must be
      // cleared first (set now, so that it holds even if a filter throws midway).
      this.#highWater = Math.max(this.#highWater, scratch + used + bytes)
      for (let p = 0; p < nprobe; p++) {
        const l = ranked[p]!
        order[j * nprobe + p] = l
        probeDots[j * nprobe + p] = this.#dots[l]!
        sums[j * nprobe + p] = scratch + used
        used += Math.ceil(this.#lists[l]!.count / BLOCK) * BLOCK * 4
      }
      if (i >= squaredFirst + 4) {
        squaredFirst = i
        sumSquares4(data, i, Math.min(4, count - i), dim, squares)
      }
      this.#prepare(
        data.subarray(i * dim, (i + 1) * dim),
        luts[j]!,
        prepared,
        j * 4,
        squares[i - squaredFirst]!,
      )
      if (rotated !== null) rotated.set(this.#rotatedQuery, j * D)
    }
    flush()
    return { ids, distances, counts, stats }
  }

  /**
   * FastScan sums for a batch of `batch` queries (their tables at `luts`, their probed
   * lists in `order`), list by list: a list's codes are read once for
   * all the queries that probe it, two queries per kernel call. Each (query, probe) gets the
   * sums of every vector of the list at `sums[query * nprobe + probe]`.
   */
  #fastscanBatch(
    batch: number,
    nprobe: number,
    order: Uint32Array,
    sums: Uint32Array,
    luts: Uint32Array,
    listStart: Uint32Array,
    pairs: Uint32Array,
  ): void {
    const k = this.#codec.k
    const lists = this.#lists.length
    const n = batch * nprobe
    listStart.fill(0)
    for (let t = 0; t < n; t++) listStart[order[t]! + 1]!++
    for (let l = 0; l < lists; l++) listStart[l + 1]! += listStart[l]!
    for (let t = 0; t < n; t++) pairs[listStart[order[t]!]!++] = t
    // listStart[l] is now where list l's pairs end (and l + 1's begin).
    let start = 0
    const groups = this.#groups
    for (let l = 0; l < lists; l++) {
      const end = listStart[l]!
      const list = this.#lists[l]!
      if (end > start && list.count > 0) {
        const nb = Math.ceil(list.count / BLOCK)
        const codes = list.codes.off
        let t = start
        for (; t + 1 < end; t += 2) {
          const a = pairs[t]!
          const b = pairs[t + 1]!
          k.fastscan2(
            codes,
            nb,
            luts[Math.floor(a / nprobe)]!,
            luts[Math.floor(b / nprobe)]!,
            groups,
            sums[a]!,
            sums[b]!,
          )
        }
        if (t < end) {
          const a = pairs[t]!
          k.fastscan(codes, nb, luts[Math.floor(a / nprobe)]!, groups, sums[a]!)
        }
      }
      start = end
    }
  }

  #checkSearch(options: SearchOptions): {
    k: number
    nprobe: number
    rerank: boolean
    epsilon0: number
    filter: ((id: bigint) => boolean) | undefined
  } {
    if (options === null || typeof options !== 'object') {
      throw new InvalidOptionError(
        'search options',
        options,
        'must be { k, nprobe?, rerank?, filter?, epsilon0? }',
      )
    }
    const lists = this.spatialIndex.lists
    const k = options.k
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 1 || k > 1_000_000) {
      throw new InvalidOptionError('k', k, 'must be an integer from 1 to 1000000')
    }
    const nprobe = options.nprobe ?? Math.min(lists, DEFAULT_NPROBE)
    if (typeof nprobe !== 'number' || !Number.isInteger(nprobe) || nprobe < 1 || nprobe > lists) {
      throw new InvalidOptionError(
        'nprobe',
        nprobe,
        `must be an integer from 1 to ${lists} (the number of lists)`,
      )
    }
    const rerank = options.rerank ?? this.keepsVectors
    if (typeof rerank !== 'boolean') throw new InvalidOptionError('rerank', rerank, 'must be a boolean')
    if (rerank && !this.keepsVectors) throw new RerankUnavailableError(this.#size)
    const epsilon0 = options.epsilon0 ?? DEFAULT_EPSILON0
    if (typeof epsilon0 !== 'number' || !Number.isFinite(epsilon0) || epsilon0 < 0) {
      throw new InvalidOptionError('epsilon0', epsilon0, 'must be a finite number >= 0')
    }
    const filter = options.filter
    if (filter !== undefined && typeof filter !== 'function') {
      throw new InvalidOptionError('filter', typeof filter, 'must be a function (id: bigint) => boolean')
    }
    return { k, nprobe, rerank, epsilon0, filter }
  }

  /** One query: its centroid scores, then its lists nearest first, its table, its scan. */
  #search(
    q: Float32Array,
    nprobe: number,
    rerank: boolean,
    epsilon0: number,
    filter: ((id: bigint) => boolean) | undefined,
    top: Heap,
    stats: SearchStats,
    visit?: EstimateVisitor,
  ): void {
    const order = this.#probe(q, nprobe)
    const probeDots = this.#probeDots
    for (let p = 0; p < nprobe; p++) probeDots[p] = this.#dots[order[p]!]!
    this.#prepare(q, this.#lutOff, this.#prepared, 0)
    this.#scan(
      q,
      nprobe,
      order,
      probeDots,
      null,
      0,
      this.#prepared,
      0,
      rerank,
      epsilon0,
      filter,
      top,
      stats,
      visit,
    )
  }

  /**
   * The `nprobe` lists nearest the query, nearest first, with their centroid scores in
   * `#dots`: exactly what scoring every centroid and ranking them gives (`#order`), for less.
   * The query and the centroids are rounded to i16 and every centroid is scored with integer
   * dot products (`dots16`, eight products per instruction instead of four multiply-adds in
   * two), each with a bound on how far that score can be from the f32 one, which covers both
   * roundings and the f32 sum's own error. A list whose lowest possible key is above the
   * nprobe-th smallest highest possible key cannot be among the nprobe nearest; the rest (about
   * nprobe and a few more) get the f32 score from the kernel `gemm` and `dots` share, bit for
   * bit, and are ranked as `#order` ranks them. When nprobe is a third of the lists or more
   * the saving is gone, and every centroid is scored in f32.
   */
  #probe(q: Float32Array, nprobe: number, scored: 0 | 1 | 2 = 0): Uint32Array {
    const codec = this.#codec
    const k = codec.k
    const lists = this.spatialIndex.lists
    if (nprobe * 3 > lists) {
      codec.loadRow(q, 0)
      const heap = codec.scoreLoadedRow()
      this.#dots.set(heap.subarray(codec.scoresOff >>> 2, (codec.scoresOff >>> 2) + lists))
      return this.#order(nprobe)
    }
    const dim = this.compressor.dim
    const dim8 = this.#dim8
    let f32 = k.f32()
    if (scored === 0) {
      const qAt = this.#q32Off >>> 2
      f32.set(q, qAt)
      f32.fill(0, qAt + dim, qAt + dim8)
      k.quant16(this.#q32Off, dim8, this.#qmax, this.#q16Off, this.#probeStatsOff)
      k.dots16(this.#q16Off, this.#c16Off, lists, dim8, this.#probeOutOff)
    } else if (scored === 2) {
      // The second query of a pair (#scorePair): its rows and scores into the first's place.
      const u8 = k.u8()
      const span = this.#probeRowsOff - this.#q32Off
      u8.copyWithin(this.#q32Off, this.#probeSecondOff, this.#probeSecondOff + span)
      u8.copyWithin(this.#probeStatsOff, this.#probeSecondOff + span, this.#probeSecondOff + span + 16)
    }
    f32 = k.f32()
    const m = f32[this.#probeStatsOff >>> 2]!
    const inv = f32[(this.#probeStatsOff >>> 2) + 1]!
    const sq = inv > 0 ? 1 / inv : 0
    const l2 = this.compressor.metric === 'l2'
    const norms = codec.centroidNorms
    // The f32 score's own error: four lanes of dim4 / 4 products each, then three additions.
    const gamma = ((codec.dim4 / 4 + 4) * 2 ** -24 * 1.01 + 1e-12) * m
    // |q_j - q̃_j / inv| <= (1/2 + the f32 product's rounding, at most qmax 2^-24) / inv.
    const half = (0.5 + this.#qmax * 2 ** -23) * 1.0001
    const params = this.#probeParamsOff >>> 3
    const f64 = k.f64()
    f64[params] = sq
    f64[params + 1] = m
    f64[params + 2] = half * sq
    f64[params + 3] = gamma
    f64[params + 4] = l2 ? 1 : 0
    f64[params + 5] = nprobe
    // Every list's bounds on its key, |<q, c> - sq sc <q̃, c̃>| <= max|q| sum|c - sc c̃| +
    // sc sum|q - sq q̃| |c̃| plus f32's error; the lists whose lowest key is under the nprobe-th
    // smallest highest key (`probebound`: in JavaScript this loop was a tenth of searchMany).
    const count = k.probebound(
      this.#probeOutOff,
      this.#probeTableOff,
      this.#probeStride,
      lists,
      this.#probeParamsOff,
      this.#probeBestOff,
      this.#probeCandidatesOff,
    )
    const candidates = this.#probeLists
    const u32 = k.u32()
    candidates.set(u32.subarray(this.#probeCandidatesOff >>> 2, (this.#probeCandidatesOff >>> 2) + count))
    // The candidates' rows for `distances` (dot products, `dot`'s bits), written in place of
    // every row's offset only for this call.
    const rows = this.#probeRowsOff >>> 2
    const dim4 = codec.dim4
    for (let i = 0; i < count; i++) u32[rows + i] = codec.centroidsOff + candidates[i]! * dim4 * 4
    k.distances(this.#q32Off, this.#probeRowsOff, count, dim4, 0, this.#probeScoresOff)
    f32 = k.f32()
    const dots = this.#dots
    const keys = this.#probeKeys
    for (let i = 0; i < count; i++) {
      const l = candidates[i]!
      const dot = f32[(this.#probeScoresOff >>> 2) + i]!
      dots[l] = dot
      keys[i] = l2 ? norms[l]! - 2 * dot : -dot
    }
    return smallestFirst(keys, candidates, count, nprobe, this.#rankKeys, this.#ranked)
  }

  /**
   * The coarse probe's i16 scores of two queries at once (`dots16x2` reads each centroid row
   * once for both): a's ready for `#probe(a, nprobe, 1)`, then b's for `#probe(b, nprobe, 2)`.
   */
  #scorePair(a: Float32Array, b: Float32Array): void {
    const k = this.#codec.k
    const dim = this.compressor.dim
    const dim8 = this.#dim8
    const lists = this.spatialIndex.lists
    const second = this.#probeSecondOff
    const q16 = second + (this.#q16Off - this.#q32Off)
    const out = second + (this.#probeOutOff - this.#q32Off)
    const stats = second + (this.#probeRowsOff - this.#q32Off)
    const f32 = k.f32()
    for (const [q, at] of [
      [a, this.#q32Off >>> 2],
      [b, second >>> 2],
    ] as const) {
      f32.set(q, at)
      f32.fill(0, at + dim, at + dim8)
    }
    k.quant16(this.#q32Off, dim8, this.#qmax, this.#q16Off, this.#probeStatsOff)
    k.quant16(second, dim8, this.#qmax, q16, stats)
    k.dots16x2(this.#q16Off, q16, this.#c16Off, lists, dim8, this.#probeOutOff, out)
  }

  /** The `nprobe` lists nearest the query whose centroid scores `#dots` holds, nearest first. */
  #order(nprobe: number): Uint32Array {
    // By |q - c|^2 under l2, by <q, c> otherwise (how vectors were assigned).
    const dots = this.#dots
    const keys = this.#keys
    const norms = this.#codec.centroidNorms
    const lists = keys.length
    if (this.compressor.metric === 'l2') for (let l = 0; l < lists; l++) keys[l] = norms[l]! - 2 * dots[l]!
    else for (let l = 0; l < lists; l++) keys[l] = -dots[l]!
    return nearestFirst(keys, nprobe)
  }

  /**
   * The query's one FastScan table, at `lut`: P q - P m rounded to 4 bits (each vector's `add`
   * holds its list's part, P c - P m; see #insert), so a probed list costs its codes, not a
   * table. Leaves P q in `#rotatedQuery` and at `#rotatedQueryOff`; writes lo, delta, the
   * sum of the rounded values and |q|^2 to `out` from `at`.
   */
  #prepare(q: Float32Array, lut: number, out: Float64Array, at: number, squared?: number): void {
    const k = this.#codec.k
    const D = this.#D
    this.#codec.rotation.apply(k, q, 0, this.compressor.dim, this.#rotatedQuery, 0)
    k.f32().set(this.#rotatedQuery, this.#rotatedQueryOff >>> 2)
    k.lut4(this.#rotatedQueryOff, this.#centerOff, D, this.#ditherOff, this.#qprimeOff, lut, this.#statsOff)
    const f64 = k.f64()
    const statsAt = this.#statsOff >>> 3
    const lo = f64[statsAt + 1]!
    const delta = f64[statsAt + 2]!
    let qq = 0
    if (squared !== undefined) qq = squared
    else for (let j = 0; j < q.length; j++) qq += q[j]! * q[j]!
    out[at] = lo
    out[at + 1] = delta
    out[at + 2] = D * lo + delta * f64[statsAt + 3]!
    out[at + 3] = qq
  }

  /**
   * Scan a query's probed lists in order (`order` and their centroid scores `probeDots` from
   * `at`), with its table's figures (`prepared` from `pat`): estimate every vector, keep the
   * top k, reranking where the bound says a vector can still make it. The sums come from
   * FastScan on the table at `#lutOff` list by list, or, given `sums`, were computed before
   * (`searchMany`; the same integers).
   */
  #scan(
    q: Float32Array,
    nprobe: number,
    order: Uint32Array,
    probeDots: Float32Array,
    sums: Uint32Array | null,
    at: number,
    prepared: Float64Array,
    pat: number,
    rerank: boolean,
    epsilon0: number,
    filter: ((id: bigint) => boolean) | undefined,
    top: Heap,
    stats: SearchStats,
    visit: EstimateVisitor | undefined,
  ): void {
    const codec = this.#codec
    const k = codec.k
    const D = this.#D
    const metric = this.compressor.metric
    const l2 = metric === 'l2'
    const bits = this.compressor.bits
    const exBits = bits - 1
    if (rerank) {
      const f32 = k.f32()
      f32.set(q, this.#queryOff >>> 2)
      f32.fill(0, (this.#queryOff >>> 2) + q.length, (this.#queryOff + this.#vecStride) >>> 2)
    }
    const twoOrOne = l2 ? 2 : 1
    const cB = -((1 << bits) - 1) / 2
    // |o - c| / (2 x0) = |scale| * sqrt(D) / 2 (|scale| already doubled under l2, like the bound).
    const halfSqrtD = Math.sqrt(D) / 2
    const paramsAt = this.#paramsOff >>> 3
    const candidateIdAt = this.#candidateIdOff >>> 2
    const candidateEstAt = this.#candidateEstOff >>> 3
    const candidateBoundAt = this.#candidateBoundOff >>> 3
    // Reranked 1-bit search without a filter or visitor: the candidates go straight to the queue.
    const fast = rerank && exBits === 0 && filter === undefined && visit === undefined

    let f64 = k.f64()
    const lo = prepared[pat]!
    const delta = prepared[pat + 1]!
    const sumQhat = prepared[pat + 2]!
    const qq = prepared[pat + 3]!
    // sqrt(D) <x̄, P q> = 2 <b, P q> - sum P q, with <b, P q> ~ lo * popcount(b) + delta * fastscan sum.
    f64[paramsAt] = 2 * lo
    f64[paramsAt + 1] = 2 * delta
    f64[paramsAt + 2] = -sumQhat
    f64[paramsAt + 5] = (epsilon0 * halfSqrtD * delta) ** 2

    for (let p = 0; p < nprobe; p++) {
      const l = order[at + p]!
      const list = this.#lists[l]!
      if (list.count === 0) continue
      stats.lists++

      // |q'|^2 = |q - c|^2 (P is orthogonal), from the centroid scores already computed.
      const dot = probeDots[at + p]!
      const qn2 = Math.max(0, qq + codec.centroidNorms[l]! - 2 * dot)
      f64 = k.f64()
      const offset = l2 ? qn2 : metric === 'ip' ? -dot : 1 - dot
      f64[paramsAt + 3] = offset
      f64[paramsAt + 4] = epsilon0 * epsilon0 * qn2
      const qnorm = Math.sqrt(qn2)

      let exReady = false
      let lo8 = 0
      let delta8 = 0
      let sumQhat8 = 0
      const blocks = Math.ceil(list.count / BLOCK)
      for (let b0 = 0; b0 < blocks; b0 += CHUNK_BLOCKS) {
        const nb = Math.min(CHUNK_BLOCKS, blocks - b0)
        const first = b0 * BLOCK
        const count = Math.min(list.count, (b0 + nb) * BLOCK) - first
        let sumsOff = this.#sumsOff
        if (sums === null) {
          k.fastscan(list.codes.off + b0 * this.#blockBytes, nb, this.#lutOff, this.#groups, sumsOff)
        } else sumsOff = sums[at + p]! + first * 4
        f64 = k.f64()
        // Only vectors whose lower bound beats the current k-th come back (all of them for `visit`).
        f64[paramsAt + 6] = visit === undefined && top.full ? top.topKey : Number.POSITIVE_INFINITY
        const candidates = k.screen(
          sumsOff,
          list.factors.off + b0 * FACTOR_BLOCK_BYTES,
          count,
          this.#paramsOff,
          this.#candidateIdOff,
          this.#candidateEstOff,
          this.#candidateBoundOff,
        )
        stats.estimated += count
        const u32 = k.u32()
        let queued = 0
        if (fast) {
          // Every candidate is queued as it is: its lower bound already beat the k-th the
          // screen was given, and nothing enters the top k before the queue is reranked.
          const lower = this.#queuedLower
          const positions = this.#queuedPositions
          for (let c = 0; c < candidates; c++) {
            lower[c] = f64[candidateEstAt + c]! - f64[candidateBoundAt + c]!
            positions[c] = first + u32[candidateIdAt + c]!
          }
          if (candidates > 0) this.#rerankQueued(l, candidates, top, stats)
          continue
        }
        for (let c = 0; c < candidates; c++) {
          const v = first + u32[candidateIdAt + c]!
          const est = f64[candidateEstAt + c]!
          const bound = f64[candidateBoundAt + c]!
          if (visit !== undefined) {
            let estEx = est
            let boundEx = bound
            if (exBits > 0) {
              if (!exReady) {
                ;({ lo8, delta8, sumQhat8 } = this.#quantize8(l))
                exReady = true
              }
              const x = k.exdot(list.ex!.off + v * this.#exStride, bits, this.#pairs, this.#qPlanesOff)
              const ipEx = list.scaleEx[v]! * (lo8 * list.sumU[v]! + delta8 * x + cB * sumQhat8)
              estEx = this.#factorAdd(list, v) + offset - twoOrOne * ipEx
              boundEx = twoOrOne * epsilon0 * Math.hypot(list.errEx[v]! * qnorm, list.qErrEx[v]! * delta8)
            }
            visit(list.ids[v]!, est, bound, estEx, boundEx)
            continue
          }
          if (top.full && est - bound >= top.topKey) continue
          if (filter !== undefined && !filter(list.ids[v]!)) continue
          let d = est
          let lowerEx = 0
          if (exBits > 0) {
            if (!exReady) {
              ;({ lo8, delta8, sumQhat8 } = this.#quantize8(l))
              exReady = true
            }
            stats.refined++
            const x = k.exdot(list.ex!.off + v * this.#exStride, bits, this.#pairs, this.#qPlanesOff)
            const ipEx = list.scaleEx[v]! * (lo8 * list.sumU[v]! + delta8 * x + cB * sumQhat8)
            const estEx = this.#factorAdd(list, v) + offset - twoOrOne * ipEx
            const boundEx = twoOrOne * epsilon0 * Math.hypot(list.errEx[v]! * qnorm, list.qErrEx[v]! * delta8)
            lowerEx = estEx - boundEx
            if (top.full && lowerEx >= top.topKey) continue
            d = estEx
          }
          if (rerank) {
            this.#queuedLower[queued] = exBits > 0 ? lowerEx : est - bound
            this.#queuedPositions[queued++] = v
            continue
          }
          top.offer(d, l, v)
        }
        if (queued > 0) this.#rerankQueued(l, queued, top, stats)
      }
    }
  }

  /**
   * Exact distances for the `queued` vectors of list l, lowest lower bound first, until the
   * next lower bound cannot beat the k-th: when the top k is still filling (the first list)
   * the best-looking vectors set a tight k-th at once, instead of whichever came first.
   * They go in batches (rows read side by side by the kernel), so the k-th a vector is
   * screened against is at most one batch behind. The order is by (lower bound, position), a
   * total order, from a heap built in place in one pass: a list scanned while the top k is
   * still filling queues all its vectors (~300 on Fashion-MNIST) and reranks a few dozen, and
   * pushing them one by one into the shared `Heap` cost about a tenth of a search.
   */
  #rerankQueued(l: number, queued: number, top: Heap, stats: SearchStats): void {
    const lower = this.#queuedLower
    const positions = this.#queuedPositions
    const u32 = this.#codec.k.u32()
    const rows = this.#rerankRowsOff >>> 2
    const vectors = this.#lists[l]!.vectors!.off
    // The first batch, the RERANK_BATCH smallest under the k-th, kept sorted by insertion: a
    // list scanned while the top k fills queues all its vectors, and most of them never get
    // further than this comparison. The top k after a batch does not depend on the order
    // within it.
    let worst = top.full ? top.topKey : Number.POSITIVE_INFINITY
    const firstLower = this.#firstLower
    const firstPositions = this.#pendingPositions
    // The queue is in increasing position (the screen's order), so a vector taken later never
    // goes before an equal lower bound already taken: comparing lower bounds orders by
    // (lower bound, position).
    let taken = 0
    for (let i = 0; i < queued; i++) {
      const x = lower[i]!
      if (!(x < worst)) continue
      if (taken === RERANK_BATCH) {
        if (!(x < firstLower[RERANK_BATCH - 1]!)) continue
      } else taken++
      const p = positions[i]!
      let j = taken - 1
      while (j > 0) {
        const y = firstLower[j - 1]!
        if (!(x < y)) break
        firstLower[j] = y
        firstPositions[j] = firstPositions[j - 1]!
        j--
      }
      firstLower[j] = x
      firstPositions[j] = p
    }
    if (taken === 0) return
    const lastLower = firstLower[taken - 1]!
    const lastPosition = firstPositions[taken - 1]!
    for (let i = 0; i < taken; i++) u32[rows + i] = vectors + firstPositions[i]! * this.#vecStride
    stats.reranked += taken
    this.#rerankPending(taken, l, top)
    // Fewer than a batch under the k-th: the k-th only falls, so nothing else can be reranked.
    if (taken < RERANK_BATCH) return
    // The rest, past the first batch and under the new k-th, lowest lower bound first from a
    // heap built in place (Floyd's construction).
    worst = top.full ? top.topKey : Number.POSITIVE_INFINITY
    let size = 0
    for (let i = 0; i < queued; i++) {
      const x = lower[i]!
      const p = positions[i]!
      if (x < worst && (x > lastLower || (x === lastLower && p > lastPosition))) {
        lower[size] = x
        positions[size++] = p
      }
    }
    for (let i = (size >>> 1) - 1; i >= 0; i--) siftDown(lower, positions, size, i, lower[i]!, positions[i]!)
    while (size > 0) {
      worst = top.full ? top.topKey : Number.POSITIVE_INFINITY
      let pending = 0
      while (pending < RERANK_BATCH && size > 0 && lower[0]! < worst) {
        const v = positions[0]!
        if (--size > 0) siftDown(lower, positions, size, 0, lower[size]!, positions[size]!)
        u32[rows + pending] = vectors + v * this.#vecStride
        this.#pendingPositions[pending++] = v
      }
      if (pending === 0) break
      stats.reranked += pending
      this.#rerankPending(pending, l, top)
    }
  }

  /** Exact distances of the rows in the rerank slots (all of list l), into the top k. */
  #rerankPending(pending: number, l: number, top: Heap): void {
    const k = this.#codec.k
    const metric = this.compressor.metric
    k.distances8(
      this.#queryOff,
      this.#rerankRowsOff,
      pending,
      this.#vecStride >>> 2,
      metric === 'l2' ? 1 : 0,
      this.#rerankOutOff,
    )
    const f32 = k.f32()
    const out = this.#rerankOutOff >>> 2
    for (let i = 0; i < pending; i++) {
      const exact = f32[out + i]!
      top.offer(metric === 'l2' ? exact : metric === 'ip' ? -exact : 1 - exact, l, this.#pendingPositions[i]!)
    }
  }

  /** The `add` factor of vector v of a list: |r|^2 under l2, -<o - c, c> otherwise. */
  #factorAdd(list: List, v: number): number {
    return list.addEx[v]!
  }

  /**
   * Every vector's estimates for `query` (all lists), for tests and tools: the 1-bit
   * estimate and bound, and the extra-bits estimate and bound (equal to the 1-bit ones when
   * bits = 1). Not part of the public interface.
   * @internal
   */
  estimates(query: VectorInput, epsilon0: number, visit: EstimateVisitor): void {
    const q = toQuery(query, this.compressor.dim, this.compressor.metric)
    const stats: SearchStats = { lists: 0, estimated: 0, refined: 0, reranked: 0 }
    this.#search(q, this.spatialIndex.lists, false, epsilon0, undefined, topK(1), stats, visit)
  }

  /**
   * Quantize list l's q' = P q - P c to 8 bits with randomized rounding, as bit planes on the
   * heap (the extra-bit estimate; the 1-bit pass rounds P q once per query instead).
   */
  #quantize8(l: number): { lo8: number; delta8: number; sumQhat8: number } {
    const k = this.#codec.k
    const D = this.#D
    k.lut4(
      this.#rotatedQueryOff,
      this.#rotatedCentroidsOff + l * D * 4,
      D,
      this.#ditherOff,
      this.#listQprimeOff,
      this.#listLutOff,
      this.#listStatsOff,
    )
    k.planes8(
      this.#listQprimeOff,
      D,
      this.#dither8Off,
      this.#qPlanesOff,
      this.#pairs * 16,
      this.#listStatsOff,
    )
    const f64 = k.f64()
    const at = this.#listStatsOff >>> 3
    const lo = f64[at + 1]!
    const delta = f64[at + 5]!
    return { lo8: lo, delta8: delta, sumQhat8: D * lo + delta * f64[at + 6]! }
  }
}

/**
 * The `count` smallest of `m` keys (m >= count), as `nearestFirstOf` ranks them (by key, then
 * index), into `out` (its first `count` entries; `bestKeys` is scratch): by insertion, as
 * m is about count. The indices must be ascending, as the probe lists them, so a later
 * index never goes before an equal key.
 * @internal
 */
export function smallestFirst(
  keys: Float64Array,
  indices: Uint32Array,
  m: number,
  count: number,
  bestKeys: Float64Array,
  out: Uint32Array,
): Uint32Array {
  let filled = 0
  for (let i = 0; i < m; i++) {
    const key = keys[i]!
    let j: number
    if (filled < count) j = filled++
    else if (key < bestKeys[count - 1]!) j = count - 1
    else continue
    while (j > 0 && bestKeys[j - 1]! > key) {
      bestKeys[j] = bestKeys[j - 1]!
      out[j] = out[j - 1]!
      j--
    }
    bestKeys[j] = key
    out[j] = indices[i]!
  }
  return out
}

/** @internal */
export type EstimateVisitor = (id: bigint, est: number, bound: number, estEx: number, boundEx: number) => void

/**
 * Place (key, position) at slot i of a min-heap of `size` entries ordered by key, then
 * position (slot i's children being heaps already), moving it down to its place.
 */
function siftDown(
  keys: Float64Array,
  positions: Uint32Array,
  size: number,
  i: number,
  key: number,
  position: number,
): void {
  for (;;) {
    let child = 2 * i + 1
    if (child >= size) break
    const right = child + 1
    if (
      right < size &&
      (keys[right]! < keys[child]! || (keys[right] === keys[child] && positions[right]! < positions[child]!))
    )
      child = right
    const ck = keys[child]!
    if (!(ck < key || (ck === key && positions[child]! < position))) break
    keys[i] = ck
    positions[i] = positions[child]!
    i = child
  }
  keys[i] = key
  positions[i] = position
}

/**
 * |q|^2 of `count` (1 to 4) rows of `data` from row `first`, into `out`: each row's squares
 * summed in f64 in increasing order, exactly as `#prepare` sums one query, but four rows'
 * chains of dependent additions interleaved (one row alone waits on each addition).
 */
function sumSquares4(data: Float32Array, first: number, count: number, dim: number, out: Float64Array): void {
  const a = first * dim
  const b = count > 1 ? a + dim : a
  const c = count > 2 ? a + 2 * dim : a
  const d = count > 3 ? a + 3 * dim : a
  let s0 = 0
  let s1 = 0
  let s2 = 0
  let s3 = 0
  for (let j = 0; j < dim; j++) {
    s0 += data[a + j]! * data[a + j]!
    s1 += data[b + j]! * data[b + j]!
    s2 += data[c + j]! * data[c + j]!
    s3 += data[d + j]! * data[d + j]!
  }
  out[0] = s0
  out[1] = s1
  out[2] = s2
  out[3] = s3
}

function popcount8(x: number): number {
  x -= (x >>> 1) & 0x55
  x = (x & 0x33) + ((x >>> 2) & 0x33)
  return (x + (x >>> 4)) & 0x0f
}

/**
 * The k nearest of a search: a max heap (its top is the k-th distance) of (distance, list,
 * position in the list), so equal distances keep the lowest list and position.
 */
function topK(k: number): Heap {
  return new Heap('max', k, Math.min(k, 1 << 16))
}

/**
 * The ids (as u32 word pairs, `words`) and distances `top` holds, nearest first (by
 * distance, list, position), written from `at` on; empties it.
 */
function nearestOf(
  top: Heap,
  lists: readonly List[],
  words: Uint32Array,
  distances: Float32Array,
  at: number,
): void {
  // Word by word (`words` views the ids' BigUint64Array): reading one makes a BigInt, and
  // copying 5,000 ids that way was a tenth of searchMany's own JavaScript time.
  for (let i = top.size - 1; i >= 0; i--) {
    const from = lists[top.topA]!.ids32
    const b = top.topB * 2
    words[(at + i) * 2] = from[b]!
    words[(at + i) * 2 + 1] = from[b + 1]!
    distances[at + i] = top.topKey
    top.pop()
  }
}
