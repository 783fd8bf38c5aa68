// Rows of a shuffled window moved into its order: on a read thread (read-worker.js, next to
// the reads that hashed them) or on the caller's (`@dreamdb/arrow`'s permuteVectorsInPlace).
// An ordinary module file, so that the read thread imports it as is under a test runner.
/**
 * Puts rows of `rowBytes` bytes into a shuffled window's order, in place, across the
 * window's buffers: afterwards position `p` (row `rowOf[p]` of buffer `bucketOf[p]`, which
 * starts at byte `offsets[bucketOf[p]]`) holds the row that position `order[p]` held. Each
 * row moves once (cycle by cycle, through one spare row). An `order` that is no permutation
 * throws (`RangeError`) with rows half moved.
 *
 * @param {import('./read-threads.js').RowPermutation} permutation
 */
export function permuteRows({ buffers, offsets, rowBytes, bucketOf, rowOf, order }) {
  // One view per buffer, so that rows of two buckets in one buffer move by copyWithin.
  const byBuffer = new Map()
  const views = buffers.map((b) => {
    if (!byBuffer.has(b)) byBuffer.set(b, new Uint8Array(b))
    return byBuffer.get(b)
  })
  const at = (p) => offsets[bucketOf[p]] + rowOf[p] * rowBytes
  const n = order.length
  const done = new Uint8Array(n)
  const spare = new Uint8Array(rowBytes)
  for (let start = 0; start < n; start++) {
    if (done[start] === 1) continue
    if (order[start] === start) {
      done[start] = 1
      continue
    }
    const first = at(start)
    spare.set(views[bucketOf[start]].subarray(first, first + rowBytes))
    let p = start
    for (;;) {
      done[p] = 1
      const q = order[p]
      const to = views[bucketOf[p]]
      if (q === start) {
        to.set(spare, at(p))
        break
      }
      // A position met twice: `order` is no permutation, and the walk would never end.
      if (done[q] === 1) throw new RangeError(`order is not a permutation: position ${q} is taken twice`)
      const from = views[bucketOf[q]]
      const source = at(q)
      if (from === to) to.copyWithin(at(p), source, source + rowBytes)
      else to.set(from.subarray(source, source + rowBytes), at(p))
      p = q
    }
  }
}
