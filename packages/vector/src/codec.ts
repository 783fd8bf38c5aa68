/**
 * A spatial index and a compressor joined for work: exact assignment of vectors to lists,
 * rotation, RaBitQ and extended-RaBitQ encoding, and decoding. See design/0004 for the
 * algebra; in short, with r = P(o - c) the rotated residual of vector o from its centroid c
 * and D the padded dimension:
 *
 * - the 1-bit code is b_i = [r_i > 0]; x0 = <x̄, r/|r|> = |r|_1 / (sqrt(D) |r|);
 * - with B > 1 bits, a per-vector rescale t gives code_i = min(floor(t |r_i| / |r|), 2^(B-1) - 1)
 *   and the grid vector y_i = sign(r_i) (code_i + 1/2); x0ex = <y, r> / (|y| |r|);
 *   stored as u_i = b_i 2^(B-1) + (b_i ? code_i : 2^(B-1) - 1 - code_i), so y = u - (2^B - 1)/2.
 */
import { IncompatibleError } from './errors.js'
import { createKernels, type KernelChoice, type Kernels } from './kernels/kernels.js'
import type { SpatialIndex, VectorCompressor } from './model.js'
import { Rotation } from './rotation.js'

/** Per-vector results of encoding, struct of arrays. */
export interface EncodedRows {
  count: number
  /** The list each vector was assigned to. */
  lists: Uint32Array
  /** |o - c| (the residual's norm). */
  norm: Float32Array
  /** <ō, o> of the 1-bit code. */
  x0: Float32Array
  /** <o - c, c> (ip and cosine only; zeros under l2). */
  radial: Float32Array
  /** <ȳ, o> of the multi-bit code (zeros when bits = 1). */
  x0ex: Float32Array
  /** `count * paddedDim / 8` sign bits, LSB first. */
  signs: Uint8Array
  /** `count * (bits - 1) * paddedDim / 8`: per vector, planes 0 .. bits-2 of the extra code. */
  ex: Uint8Array
}

export function emptyRows(count: number, paddedDim: number, bits: number): EncodedRows {
  return {
    count,
    lists: new Uint32Array(count),
    norm: new Float32Array(count),
    x0: new Float32Array(count),
    radial: new Float32Array(count),
    x0ex: new Float32Array(count),
    signs: new Uint8Array((count * paddedDim) / 8),
    ex: new Uint8Array((count * (bits - 1) * paddedDim) / 8),
  }
}

const rotations = new WeakMap<VectorCompressor, Rotation>()

export function rotationOf(compressor: VectorCompressor): Rotation {
  let rotation = rotations.get(compressor)
  if (rotation === undefined) {
    rotation = new Rotation(compressor.paddedDim, compressor.rotation.rounds, compressor.rotation.signs)
    rotations.set(compressor, rotation)
  }
  return rotation
}

export function checkCompatible(spatialIndex: SpatialIndex, compressor: VectorCompressor): void {
  if (spatialIndex.dim !== compressor.dim) {
    throw new IncompatibleError(
      'The compressor does not fit the spatial index',
      `dimension ${spatialIndex.dim}`,
      `dimension ${compressor.dim}`,
    )
  }
  if (spatialIndex.metric !== compressor.metric) {
    throw new IncompatibleError(
      'The compressor does not fit the spatial index',
      `metric '${spatialIndex.metric}'`,
      `metric '${compressor.metric}'`,
    )
  }
}

/**
 * Heap layout from offset 0: the rotation (signs and work row), the centroids (rows padded
 * to a multiple of 4 floats), one input row, one score per list, then a block of input rows,
 * their byte offsets and their scores (`encode` assigns a block at a time). `heapEnd` is where
 * a user of the same heap (the index) may start.
 */
export class Codec {
  readonly spatialIndex: SpatialIndex
  readonly compressor: VectorCompressor
  readonly k: Kernels
  readonly rotation: Rotation
  readonly dim: number
  readonly dim4: number
  readonly paddedDim: number
  readonly lists: number
  readonly bits: number
  /** Rotated centroids, `lists * paddedDim`. */
  readonly rotatedCentroids: Float32Array
  /** |c|^2 per list (f64). */
  readonly centroidNorms: Float64Array
  readonly centroidsOff: number
  readonly rowOff: number
  readonly scoresOff: number
  /** Rows per block of `encode`'s assignment (about 128 KiB of them, so they stay in L2). */
  readonly block: number
  readonly blockOff: number
  readonly blockRowsOff: number
  readonly blockScoresOff: number
  readonly heapEnd: number
  readonly #rotated: Float32Array
  readonly #residual: Float64Array
  readonly #abs: Float64Array
  readonly #codes: Uint8Array

  constructor(
    spatialIndex: SpatialIndex,
    compressor: VectorCompressor,
    kernels: KernelChoice | Kernels = 'auto',
  ) {
    checkCompatible(spatialIndex, compressor)
    this.spatialIndex = spatialIndex
    this.compressor = compressor
    this.k = typeof kernels === 'string' ? createKernels(kernels) : kernels
    this.rotation = rotationOf(compressor)
    this.dim = compressor.dim
    this.dim4 = Math.ceil(this.dim / 4) * 4
    this.paddedDim = compressor.paddedDim
    this.lists = spatialIndex.lists
    this.bits = compressor.bits
    this.centroidsOff = align16(this.rotation.heapBytes)
    this.rowOff = align16(this.centroidsOff + this.lists * this.dim4 * 4)
    this.scoresOff = align16(this.rowOff + this.dim4 * 4)
    this.block = Math.max(8, Math.min(64, Math.floor((128 * 1024) / (this.dim4 * 4))))
    this.blockOff = align16(this.scoresOff + this.lists * 4)
    this.blockRowsOff = align16(this.blockOff + this.block * this.dim4 * 4)
    this.blockScoresOff = align16(this.blockRowsOff + this.block * 4)
    this.heapEnd = align16(this.blockScoresOff + this.block * this.lists * 4)
    this.k.reserve(this.heapEnd)
    this.rotation.load(this.k)
    const heap = this.k.f32()
    const { centroids } = spatialIndex
    this.centroidNorms = new Float64Array(this.lists)
    for (let l = 0; l < this.lists; l++) {
      const row = centroids.subarray(l * this.dim, (l + 1) * this.dim)
      heap.set(row, (this.centroidsOff >>> 2) + l * this.dim4)
      let n2 = 0
      for (let j = 0; j < this.dim; j++) n2 += row[j]! * row[j]!
      this.centroidNorms[l] = n2
    }
    this.rotatedCentroids = new Float32Array(this.lists * this.paddedDim)
    for (let l = 0; l < this.lists; l++) {
      this.rotation.apply(
        this.k,
        centroids,
        l * this.dim,
        this.dim,
        this.rotatedCentroids,
        l * this.paddedDim,
      )
    }
    this.#rotated = new Float32Array(this.paddedDim)
    this.#residual = new Float64Array(this.paddedDim)
    this.#abs = new Float64Array(this.paddedDim)
    this.#codes = new Uint8Array(this.paddedDim)
  }

  /** Put a row in the heap's input slot (zero-padded to `dim4`). */
  loadRow(data: Float32Array, offset: number): void {
    const heap = this.k.f32()
    const at = this.rowOff >>> 2
    heap.set(data.subarray(offset, offset + this.dim), at)
    for (let j = this.dim; j < this.dim4; j++) heap[at + j] = 0
  }

  /** Dot products of the loaded row with every centroid, into the scores slot; returns the heap view. */
  scoreLoadedRow(): Float32Array {
    this.k.dots(this.rowOff, this.centroidsOff, this.lists, this.dim4, this.scoresOff)
    return this.k.f32()
  }

  /** The list of the loaded row: nearest centroid (l2) or largest inner product (ip, cosine). */
  assignLoadedRow(): number {
    return this.#best(this.scoreLoadedRow(), this.scoresOff >>> 2)
  }

  /** The list of the row whose scores start at heap[s]. */
  #best(heap: Float32Array, s: number): number {
    let best = 0
    if (this.spatialIndex.metric === 'l2') {
      let bestScore = Number.POSITIVE_INFINITY
      for (let l = 0; l < this.lists; l++) {
        const score = this.centroidNorms[l]! - 2 * heap[s + l]!
        if (score < bestScore) {
          bestScore = score
          best = l
        }
      }
    } else {
      let bestScore = Number.NEGATIVE_INFINITY
      for (let l = 0; l < this.lists; l++) {
        const score = heap[s + l]!
        if (score > bestScore) {
          bestScore = score
          best = l
        }
      }
    }
    return best
  }

  /**
   * Encode `count` prepared rows (checked, normalised under cosine) of `data`. Rows are
   * assigned a block at a time with one `gemm` (the centroids stream from cache once per
   * block, not once per row; the same scores, bit for bit, as one row at a time).
   */
  encode(data: Float32Array, count: number): EncodedRows {
    const out = emptyRows(count, this.paddedDim, this.bits)
    const { dim } = this
    for (let first = 0; first < count; first += this.block) {
      const rows = Math.min(this.block, count - first)
      this.scoreBlock(data, first, rows)
      for (let r = 0; r < rows; r++) {
        const list = this.#best(this.k.f32(), (this.blockScoresOff >>> 2) + r * this.lists)
        this.#encodeAssigned(data, (first + r) * dim, first + r, out, list)
      }
    }
    return out
  }

  /**
   * Dot products of rows `first ..< first + rows` of `data` (rows <= `block`) with every
   * centroid, into the block's scores (rows x lists), each the bits of `scoreLoadedRow`'s.
   */
  scoreBlock(data: Float32Array, first: number, rows: number): void {
    const { dim, dim4 } = this
    const heap = this.k.f32()
    const u32 = this.k.u32()
    for (let r = 0; r < rows; r++) {
      const at = (this.blockOff >>> 2) + r * dim4
      heap.set(data.subarray((first + r) * dim, (first + r + 1) * dim), at)
      for (let j = dim; j < dim4; j++) heap[at + j] = 0
      u32[(this.blockRowsOff >>> 2) + r] = this.blockOff + r * dim4 * 4
    }
    this.k.gemm(this.blockRowsOff, rows, this.centroidsOff, this.lists, dim4, this.blockScoresOff)
  }

  encodeRow(data: Float32Array, offset: number, i: number, out: EncodedRows): void {
    this.loadRow(data, offset)
    this.#encodeAssigned(data, offset, i, out, this.assignLoadedRow())
  }

  #encodeAssigned(data: Float32Array, offset: number, i: number, out: EncodedRows, list: number): void {
    const D = this.paddedDim
    const dim = this.dim
    out.lists[i] = list
    this.rotation.apply(this.k, data, offset, dim, this.#rotated, 0)
    const r = this.#residual
    const rc = this.rotatedCentroids
    const base = list * D
    let norm2 = 0
    let l1 = 0
    const signs = out.signs
    const signBase = (i * D) / 8
    const rotated = this.#rotated
    // Eight signs gathered in a byte, without a branch (half the signs are set, at random:
    // a branch per value mispredicted half the time; V8 compiles `+(v > 0)` without one, the
    // ternary `v > 0 ? 1 : 0` with one, 0.75x the encoding's CPU). D is a multiple of 64. The
    // residual itself is kept only for the extra bits.
    const keep = this.bits > 1
    for (let j = 0; j < D; j += 8) {
      let byte = 0
      for (let t = 0; t < 8; t++) {
        const v = rotated[j + t]! - rc[base + j + t]!
        if (keep) r[j + t] = v
        norm2 += v * v
        l1 += Math.abs(v)
        byte |= +(v > 0) << t
      }
      signs[signBase + (j >>> 3)]! |= byte
    }
    const norm = Math.sqrt(norm2)
    out.norm[i] = norm
    out.x0[i] = norm > 0 ? l1 / (Math.sqrt(D) * norm) : 1
    if (this.spatialIndex.metric !== 'l2') {
      const c = this.spatialIndex.centroids
      let radial = 0
      for (let j = 0; j < dim; j++) radial += (data[offset + j]! - c[list * dim + j]!) * c[list * dim + j]!
      out.radial[i] = radial
    }
    if (this.bits > 1) out.x0ex[i] = this.#encodeEx(r, norm, out.ex, (i * (this.bits - 1) * D) / 8)
  }

  /** The extra bits of one residual; returns x0ex. */
  #encodeEx(r: Float64Array, norm: number, ex: Uint8Array, at: number): number {
    const D = this.paddedDim
    const exBits = this.bits - 1
    const top = (1 << exBits) - 1
    if (norm === 0) {
      // o = c: every code is the same; y = ±1/2 everywhere and the estimate is exact anyway.
      return 1
    }
    const a = this.#abs
    let amax = 0
    for (let j = 0; j < D; j++) {
      const v = Math.abs(r[j]!) / norm
      a[j] = v
      if (v > amax) amax = v
    }
    const t = bestRescale(a, D, top, amax)
    const codes = this.#codes
    let dotYA = 0
    let y2 = 0
    for (let j = 0; j < D; j++) {
      const code = Math.min(Math.floor(t * a[j]!), top)
      codes[j] = code
      dotYA += (code + 0.5) * a[j]!
      y2 += (code + 0.5) * (code + 0.5)
    }
    const planeBytes = D / 8
    for (let j = 0; j < D; j++) {
      const e = r[j]! > 0 ? codes[j]! : top - codes[j]!
      for (let p = 0; p < exBits; p++) if ((e >>> p) & 1) ex[at + p * planeBytes + (j >>> 3)]! |= 1 << (j & 7)
    }
    return dotYA / Math.sqrt(y2)
  }

  /**
   * Approximate vectors back from their codes: c + |r| <ō, o> ō, the point of least expected
   * error given the code (ō the code's unit direction, rotated back).
   */
  decode(rows: EncodedRows): Float32Array {
    const D = this.paddedDim
    const dim = this.dim
    const out = new Float32Array(rows.count * dim)
    const dir = new Float32Array(D)
    const back = new Float32Array(D)
    const exBits = this.bits - 1
    const half = ((1 << this.bits) - 1) / 2
    const planeBytes = D / 8
    const c = this.spatialIndex.centroids
    for (let i = 0; i < rows.count; i++) {
      const list = rows.lists[i]!
      const norm = rows.norm[i]!
      const signBase = i * planeBytes
      let y2 = 0
      let scaleToResidual: number
      if (exBits === 0) {
        for (let j = 0; j < D; j++) dir[j] = (rows.signs[signBase + (j >>> 3)]! >>> (j & 7)) & 1 ? 1 : -1
        y2 = D
        scaleToResidual = norm * rows.x0[i]!
      } else {
        const exBase = i * exBits * planeBytes
        for (let j = 0; j < D; j++) {
          let u = ((rows.signs[signBase + (j >>> 3)]! >>> (j & 7)) & 1) << exBits
          for (let p = 0; p < exBits; p++)
            u |= ((rows.ex[exBase + p * planeBytes + (j >>> 3)]! >>> (j & 7)) & 1) << p
          const y = u - half
          dir[j] = y
          y2 += y * y
        }
        scaleToResidual = norm * rows.x0ex[i]!
      }
      const f = scaleToResidual / Math.sqrt(y2)
      for (let j = 0; j < D; j++) dir[j] = dir[j]! * f
      this.rotation.apply(this.k, dir, 0, D, back, 0, true)
      for (let j = 0; j < dim; j++) out[i * dim + j] = c[list * dim + j]! + back[j]!
    }
    return out
  }
}

/**
 * The rescale t maximising <y(t), a> / |y(t)| with y_i(t) = min(floor(t a_i), top) + 1/2 (a is
 * the |residual| direction, all >= 0): a geometric grid over the range where the largest
 * coordinate lands between 0.3 and 1.6 times the code range, then golden-section refinement
 * around the best grid point.
 */
function bestRescale(a: Float64Array, n: number, top: number, amax: number): number {
  const levels = top + 1
  const quality = (t: number): number => {
    let num = 0
    let den = 0
    for (let j = 0; j < n; j++) {
      const y = Math.min(Math.floor(t * a[j]!), top) + 0.5
      num += y * a[j]!
      den += y * y
    }
    return num / Math.sqrt(den)
  }
  const lo = (0.3 * levels) / amax
  const hi = (1.6 * levels) / amax
  const steps = 32
  const ratio = (hi / lo) ** (1 / steps)
  let bestT = lo
  let bestQ = -1
  let bestK = 0
  for (let s = 0, t = lo; s <= steps; s++, t *= ratio) {
    const q = quality(t)
    if (q > bestQ) {
      bestQ = q
      bestT = t
      bestK = s
    }
  }
  let left = lo * ratio ** Math.max(0, bestK - 1)
  let right = lo * ratio ** Math.min(steps, bestK + 1)
  const g = (Math.sqrt(5) - 1) / 2
  let x1 = right - g * (right - left)
  let x2 = left + g * (right - left)
  let q1 = quality(x1)
  let q2 = quality(x2)
  for (let it = 0; it < 12; it++) {
    if (q1 >= q2) {
      right = x2
      x2 = x1
      q2 = q1
      x1 = right - g * (right - left)
      q1 = quality(x1)
    } else {
      left = x1
      x1 = x2
      q1 = q2
      x2 = left + g * (right - left)
      q2 = quality(x2)
    }
    if (q1 > bestQ) {
      bestQ = q1
      bestT = x1
    }
    if (q2 > bestQ) {
      bestQ = q2
      bestT = x2
    }
  }
  return bestT
}

export function align16(n: number): number {
  return Math.ceil(n / 16) * 16
}

const codecs = new WeakMap<SpatialIndex, WeakMap<VectorCompressor, Codec>>()

/** A shared codec (own heap) for one-off encoding and decoding. */
export function sharedCodec(spatialIndex: SpatialIndex, compressor: VectorCompressor): Codec {
  let byCompressor = codecs.get(spatialIndex)
  if (byCompressor === undefined) {
    byCompressor = new WeakMap()
    codecs.set(spatialIndex, byCompressor)
  }
  let codec = byCompressor.get(compressor)
  if (codec === undefined) {
    codec = new Codec(spatialIndex, compressor)
    byCompressor.set(compressor, codec)
  }
  return codec
}
