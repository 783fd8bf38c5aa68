import { describe, expect, it } from 'vitest'
import { Heap } from '../src/heap.js'
import { Prng } from '../src/prng.js'

type Entry = [key: number, a: number, b: number]

/** The definition: entries sorted by key, then a, then b. */
function ascending(entries: readonly Entry[]): Entry[] {
  return [...entries].sort((x, y) => x[0] - y[0] || x[1] - y[1] || x[2] - y[2])
}

function drain(heap: Heap): Entry[] {
  const out: Entry[] = []
  while (heap.size > 0) {
    out.push([heap.topKey, heap.topA, heap.topB])
    heap.pop()
  }
  return out
}

/** Entries with many equal keys and values on both sides of 2^31. */
function entries(prng: Prng, n: number, distinct: number): Entry[] {
  const values = [0, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1]
  return Array.from({ length: n }, () => [
    prng.below(distinct) - distinct / 2,
    values[prng.below(values.length)]!,
    values[prng.below(values.length)]!,
  ])
}

describe('Heap', () => {
  it('pops in the order by key, then a, then b: largest first (max) or smallest first (min)', () => {
    const prng = new Prng(5)
    for (const [n, distinct] of [
      [1, 1],
      [9, 2],
      [200, 7],
      [500, 1000],
    ] as const) {
      const all = entries(prng, n, distinct)
      const max = new Heap('max', n, 1)
      const min = new Heap('min', n, 1)
      for (const [key, a, b] of all) {
        max.push(key, a, b)
        min.push(key, a, b)
      }
      expect(max.size).toBe(n)
      expect(max.full).toBe(true)
      expect(drain(max)).toEqual(ascending(all).reverse())
      expect(drain(min)).toEqual(ascending(all))
    }
  })

  it('offer keeps the `limit` smallest entries (max) or largest (min), whatever their order', () => {
    const prng = new Prng(8)
    for (const limit of [1, 3, 64]) {
      const all = entries(prng, 300, 20)
      const max = new Heap('max', limit, 2)
      const min = new Heap('min', limit)
      for (const [key, a, b] of all) {
        max.offer(key, a, b)
        min.offer(key, a, b)
      }
      expect(drain(max).reverse()).toEqual(ascending(all).slice(0, limit))
      expect(drain(min)).toEqual(ascending(all).slice(-limit))
    }
  })

  it('keeps -0, infinities and the top while entries come and go; push past the limit throws', () => {
    const heap = new Heap('min', 4)
    heap.push(0, 1)
    heap.push(-0, 0)
    heap.push(Number.POSITIVE_INFINITY, 2)
    heap.push(Number.NEGATIVE_INFINITY, 3)
    expect([heap.topKey, heap.topA, heap.topB]).toEqual([Number.NEGATIVE_INFINITY, 3, 0])
    expect(() => heap.push(1, 1)).toThrow(RangeError)
    heap.pop()
    expect([heap.topKey, heap.topA]).toEqual([-0, 0])
    heap.clear()
    expect(heap.size).toBe(0)
    heap.push(5, 7, 9)
    expect([heap.topKey, heap.topA, heap.topB]).toEqual([5, 7, 9])
    const none = new Heap('max', 0)
    none.offer(1, 1)
    expect(none.size).toBe(0)
  })
})
