/**
 * A small seeded generator (mulberry32) for sampling, k-means initialisation, rotation signs
 * and randomized query rounding. Nothing stored depends on it staying the same: the rotation
 * signs are written into the compressor object, and centroids into the spatial index.
 */
export class Prng {
  #state: number
  constructor(seed: number) {
    this.#state = seed >>> 0
  }
  /** A uniform 32-bit unsigned integer. */
  nextUint32(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0
    let t = this.#state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
  /** A uniform float in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296
  }
  /** A uniform integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.next() * n)
  }
}

/** `count` distinct indices from [0, n), in random order (partial Fisher-Yates). */
export function sampleIndices(n: number, count: number, prng: Prng): Uint32Array {
  const perm = new Uint32Array(n)
  for (let i = 0; i < n; i++) perm[i] = i
  for (let i = 0; i < count; i++) {
    const j = i + prng.below(n - i)
    const t = perm[i]!
    perm[i] = perm[j]!
    perm[j] = t
  }
  return perm.slice(0, count)
}
