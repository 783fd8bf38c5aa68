import type { RowPermutation } from './read-threads.js'

/**
 * Puts rows of `rowBytes` bytes into a shuffled window's order, in place, across the
 * window's buffers: afterwards position `p` (row `rowOf[p]` of buffer `bucketOf[p]`, which
 * starts at byte `offsets[bucketOf[p]]`) holds the row that position `order[p]` held. Each
 * row moves once. An `order` that is no permutation throws (`RangeError`) with rows half moved.
 */
export declare function permuteRows(permutation: RowPermutation): void
