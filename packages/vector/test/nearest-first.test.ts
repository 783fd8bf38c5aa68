import { describe, expect, it } from 'vitest'
import { nearestFirst } from '../src/nearest-first.js'
import { Prng } from '../src/prng.js'

/** The definition: indices sorted by key, then by index. */
function byComparator(keys: Float64Array, count: number): number[] {
  return Array.from(keys, (_, i) => i)
    .sort((a, b) => keys[a]! - keys[b]! || a - b)
    .slice(0, count)
}

describe('nearestFirst', () => {
  it('gives the first `count` indices of the order by key then index, ties and signed zeros included', () => {
    const prng = new Prng(3)
    for (const [n, distinct] of [
      [1, 1],
      [7, 3],
      [173, 1000],
      [245, 5],
      [500, 2],
    ] as const) {
      const keys = Float64Array.from({ length: n }, () => prng.below(distinct) - distinct / 2)
      if (n > 3) {
        keys[1] = -0
        keys[2] = 0
      }
      for (const count of [1, 2, Math.ceil(n / 3), n].filter((c) => c <= n)) {
        expect(Array.from(nearestFirst(keys, count))).toEqual(byComparator(keys, count))
      }
    }
  })
})
