/** Ranking probed lists. */
import { Heap } from './heap.js'

/**
 * The `count` smallest keys' indices, ordered by key and then index: the first `count` of
 * what sorting all indices with a comparator gives, found with a bounded max-heap of
 * (key, index) pairs instead (sorting every list's index, natively or with a comparator,
 * cost as much as scanning a few lists).
 */
export function nearestFirst(keys: Float64Array, count: number): Uint32Array {
  const heap = new Heap('max', count)
  for (let l = 0; l < keys.length; l++) heap.offer(keys[l]!, l)
  // Pop the largest into the back: ascending by (key, index).
  const order = new Uint32Array(count)
  for (let end = heap.size - 1; end >= 0; end--) {
    order[end] = heap.topA
    heap.pop()
  }
  return order
}

/**
 * `nearestFirst` over the `m` indices listed in `indices` only, their keys at the same
 * positions of `keys`: the same order, by key and then index.
 */
export function nearestFirstOf(
  keys: Float64Array,
  indices: Uint32Array,
  m: number,
  count: number,
): Uint32Array {
  const heap = new Heap('max', count)
  for (let i = 0; i < m; i++) heap.offer(keys[i]!, indices[i]!)
  const order = new Uint32Array(count)
  for (let end = heap.size - 1; end >= 0; end--) {
    order[end] = heap.topA
    heap.pop()
  }
  return order
}
