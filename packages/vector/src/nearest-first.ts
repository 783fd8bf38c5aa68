/** Ranking probed lists. */

/**
 * The `count` smallest keys' indices, ordered by key and then index: the first `count` of
 * what sorting all indices with a comparator gives, found with a bounded max-heap of
 * (key, index) pairs instead (sorting every list's index, natively or with a comparator,
 * cost as much as scanning a few lists).
 */
export function nearestFirst(keys: Float64Array, count: number): Uint32Array {
  const heapKeys = new Float64Array(count)
  const heapIndex = new Uint32Array(count)
  let size = 0
  for (let l = 0; l < keys.length; l++) {
    const key = keys[l]!
    if (size < count) {
      // sift up: l is the largest index so far, so it outranks an equal key
      let i = size++
      while (i > 0) {
        const parent = (i - 1) >>> 1
        if (!(heapKeys[parent]! <= key)) break
        heapKeys[i] = heapKeys[parent]!
        heapIndex[i] = heapIndex[parent]!
        i = parent
      }
      heapKeys[i] = key
      heapIndex[i] = l
    } else if (key < heapKeys[0]!) {
      siftDown(heapKeys, heapIndex, size, key, l)
    }
  }
  // Pop the largest into the back: ascending by (key, index).
  const order = new Uint32Array(count)
  for (let end = size - 1; end >= 0; end--) {
    order[end] = heapIndex[0]!
    siftDown(heapKeys, heapIndex, end, heapKeys[end]!, heapIndex[end]!)
  }
  return order
}

/** Put (key, index) at the root of a max-heap of `size` pairs ordered by key, then index. */
function siftDown(keys: Float64Array, index: Uint32Array, size: number, key: number, l: number): void {
  let i = 0
  for (;;) {
    let child = 2 * i + 1
    if (child >= size) break
    const right = child + 1
    if (right < size && outranks(keys[right]!, index[right]!, keys[child]!, index[child]!)) child = right
    if (!outranks(keys[child]!, index[child]!, key, l)) break
    keys[i] = keys[child]!
    index[i] = index[child]!
    i = child
  }
  keys[i] = key
  index[i] = l
}

/** Whether (a, ia) comes after (b, ib) in the order by key, then index. */
function outranks(a: number, ia: number, b: number, ib: number): boolean {
  return a > b || (a === b && ia > ib)
}
