/**
 * The random rotation P applied to every padded vector, centroid and query: `rounds` times
 * (flip the signs chosen by the compressor's sign bits; Walsh-Hadamard transform the first
 * (even rounds) or last (odd rounds) 2^k coordinates, 2^k the largest power of two <= the
 * padded dimension, scaled by 1/sqrt(2^k); when 2^k is smaller than the padded dimension, a
 * Kac's-walk step (x, y) -> (x + y, x - y) between the two halves), then a final scale by
 * 2^(-rounds/2) to undo the Kac steps. Every step is orthogonal up to that scale, so P is
 * orthogonal, costs O(D log D), and its inverse is the same steps in reverse order.
 */
import type { Kernels } from './kernels/kernels.js'
import { Prng } from './prng.js'

export const ROTATION_ROUNDS = 4

/** The sign bits of a rotation: `rounds * paddedDim` bits from a seeded generator. */
export function rotationSigns(seed: number, paddedDim: number, rounds: number = ROTATION_ROUNDS): Uint8Array {
  const prng = new Prng(seed ^ 0x5eed_0f)
  const bytes = new Uint8Array((rounds * paddedDim) / 8)
  for (let i = 0; i < bytes.length; i += 4) {
    const word = prng.nextUint32()
    bytes[i] = word & 0xff
    bytes[i + 1] = (word >>> 8) & 0xff
    bytes[i + 2] = (word >>> 16) & 0xff
    bytes[i + 3] = word >>> 24
  }
  return bytes
}

const loaded = new WeakMap<Kernels, Rotation>()

/** A rotation ready to run: the heap's first bytes hold its signs (as ±1 floats) and a work row. */
export class Rotation {
  readonly paddedDim: number
  readonly rounds: number
  /** Bytes of heap the rotation occupies from offset 0. */
  readonly heapBytes: number
  /** Byte offset of the work row. */
  readonly work: number
  readonly #signs: Float32Array
  readonly #block: number
  constructor(paddedDim: number, rounds: number, signs: Uint8Array) {
    this.paddedDim = paddedDim
    this.rounds = rounds
    this.#signs = new Float32Array(rounds * paddedDim)
    for (let i = 0; i < this.#signs.length; i++) this.#signs[i] = (signs[i >>> 3]! >>> (i & 7)) & 1 ? -1 : 1
    this.#block = 2 ** Math.floor(Math.log2(paddedDim))
    this.work = this.#signs.length * 4
    this.heapBytes = this.work + paddedDim * 4
  }

  /** Put the signs on the heap of `k` (once per heap) and make room for the work row. */
  load(k: Kernels): void {
    if (loaded.get(k) === this) return
    k.reserve(this.heapBytes)
    k.f32().set(this.#signs, 0)
    loaded.set(k, this)
  }

  /**
   * Rotate `src[srcOffset ..< srcOffset + length]`, zero-padded to `paddedDim`, into
   * `dst[dstOffset ..< dstOffset + paddedDim]`. With `inverse`, apply P^T instead (and
   * `length` may be `paddedDim`).
   */
  apply(
    k: Kernels,
    src: Float32Array,
    srcOffset: number,
    length: number,
    dst: Float32Array,
    dstOffset: number,
    inverse = false,
  ): void {
    this.load(k)
    const d = this.paddedDim
    const w = this.work >>> 2
    const heap = k.f32()
    heap.set(src.subarray(srcOffset, srcOffset + length), w)
    heap.fill(0, w + length, w + d)
    if (inverse) this.#inverse(k)
    else this.#forward(k)
    dst.set(k.f32().subarray(w, w + d), dstOffset)
  }

  #forward(k: Kernels): void {
    const d = this.paddedDim
    const n = this.#block
    const norm = 1 / Math.sqrt(n)
    for (let r = 0; r < this.rounds; r++) {
      k.mul(this.work, r * d * 4, d)
      const segment = this.work + (r % 2 === 0 ? 0 : (d - n) * 4)
      k.fwht(segment, n)
      k.scale(segment, n, norm)
      if (n < d) k.kac(this.work, d / 2)
    }
    if (n < d) k.scale(this.work, d, 2 ** (-this.rounds / 2))
  }

  #inverse(k: Kernels): void {
    const d = this.paddedDim
    const n = this.#block
    const norm = 1 / Math.sqrt(n)
    if (n < d) k.scale(this.work, d, 2 ** (-this.rounds / 2))
    for (let r = this.rounds - 1; r >= 0; r--) {
      if (n < d) k.kac(this.work, d / 2)
      const segment = this.work + (r % 2 === 0 ? 0 : (d - n) * 4)
      k.fwht(segment, n)
      k.scale(segment, n, norm)
      k.mul(this.work, r * d * 4, d)
    }
  }
}
