/** Ranking probed lists. */

/**
 * The `count` smallest keys' indices, by key and then index: what sorting the indices with a
 * comparator gives, with the engine's native numeric sort doing the work instead (a
 * comparator sort of a few hundred lists cost more than scanning a list).
 */
export function nearestFirst(keys: Float64Array, count: number): Uint32Array {
  const sorted = keys.slice().sort()
  const last = sorted[count - 1]!
  const order = new Uint32Array(count)
  const taken = new Uint8Array(count)
  for (let l = 0; l < keys.length; l++) {
    const key = keys[l]!
    if (!(key <= last)) continue
    // the first slot of this key in `sorted`, then past the slots equal keys took before it
    let lo = 0
    let hi = count
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (sorted[mid]! < key) lo = mid + 1
      else hi = mid
    }
    while (lo < count && taken[lo] === 1) lo++
    if (lo === count) continue // a tie with the last key, beyond `count`
    order[lo] = l
    taken[lo] = 1
  }
  return order
}
