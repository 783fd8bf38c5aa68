/**
 * The vector layer's one priority queue: a binary heap on typed arrays (no object per
 * entry), used to rank the lists a query probes, to keep the k nearest vectors, and to take
 * queued vectors lowest lower bound first for reranking.
 *
 * An entry is a float64 `key` and two uint32 values `a` and `b`. Entries are ordered by key,
 * then a, then b, so entries with equal keys leave in one fixed order whatever order they
 * came in. A `'max'` heap's top is the largest entry, a `'min'` heap's the smallest. A min
 * heap stores every entry mirrored (key negated, a and b complemented), so one max-heap
 * implementation serves both; the mirroring is exact.
 */
export class Heap {
  readonly order: 'min' | 'max'
  /** The most entries it holds. */
  readonly limit: number
  readonly #sign: number
  readonly #flip: number
  #key: Float64Array
  #a: Uint32Array
  #b: Uint32Array
  #size = 0

  /** `initial` entries of room, doubled as needed up to `limit`. */
  constructor(order: 'min' | 'max', limit: number, initial = limit) {
    this.order = order
    this.limit = limit
    this.#sign = order === 'max' ? 1 : -1
    this.#flip = order === 'max' ? 0 : 0xffffffff
    const room = Math.min(limit, initial)
    this.#key = new Float64Array(room)
    this.#a = new Uint32Array(room)
    this.#b = new Uint32Array(room)
  }

  get size(): number {
    return this.#size
  }

  /** Whether it holds `limit` entries. */
  get full(): boolean {
    return this.#size === this.limit
  }

  /** The top entry's key (undefined behaviour when empty). */
  get topKey(): number {
    return this.#key[0]! * this.#sign
  }

  get topA(): number {
    return (this.#a[0]! ^ this.#flip) >>> 0
  }

  get topB(): number {
    return (this.#b[0]! ^ this.#flip) >>> 0
  }

  clear(): void {
    this.#size = 0
  }

  /** Add an entry. Throws a RangeError when it already holds `limit` entries. */
  push(key: number, a: number, b = 0): void {
    if (this.#size === this.#key.length) this.#grow()
    this.#siftUp(this.#size++, key * this.#sign, (a ^ this.#flip) >>> 0, (b ^ this.#flip) >>> 0)
  }

  /**
   * Add an entry, keeping at most `limit`: when full, the entry replaces the top if it comes
   * before it. A max heap so keeps the `limit` smallest entries offered, a min heap the
   * largest.
   */
  offer(key: number, a: number, b = 0): void {
    if (this.#size < this.limit) {
      this.push(key, a, b)
      return
    }
    const k = key * this.#sign
    // Most offers to a full heap lose on the key alone.
    if (this.#size === 0 || k > this.#key[0]!) return
    const ma = (a ^ this.#flip) >>> 0
    const mb = (b ^ this.#flip) >>> 0
    if (above(this.#key[0]!, this.#a[0]!, this.#b[0]!, k, ma, mb)) this.#siftDown(this.#size, k, ma, mb)
  }

  /** Remove the top entry (read it first with `topKey`, `topA`, `topB`). */
  pop(): void {
    const last = --this.#size
    if (last > 0) this.#siftDown(last, this.#key[last]!, this.#a[last]!, this.#b[last]!)
  }

  /** Place a mirrored entry at slot i or above it. */
  #siftUp(i: number, key: number, a: number, b: number): void {
    while (i > 0) {
      const parent = (i - 1) >>> 1
      if (!this.#above(key, a, b, parent)) break
      this.#move(parent, i)
      i = parent
    }
    this.#set(i, key, a, b)
  }

  /** Put a mirrored entry at the root of the first `size` slots, then down to its place. */
  #siftDown(size: number, key: number, a: number, b: number): void {
    let i = 0
    for (;;) {
      let child = 2 * i + 1
      if (child >= size) break
      const right = child + 1
      if (right < size && this.#above(this.#key[right]!, this.#a[right]!, this.#b[right]!, child))
        child = right
      if (!above(this.#key[child]!, this.#a[child]!, this.#b[child]!, key, a, b)) break
      this.#move(child, i)
      i = child
    }
    this.#set(i, key, a, b)
  }

  /** Whether (key, a, b) comes after the entry in slot j (mirrored values). */
  #above(key: number, a: number, b: number, j: number): boolean {
    return above(key, a, b, this.#key[j]!, this.#a[j]!, this.#b[j]!)
  }

  #move(from: number, to: number): void {
    this.#set(to, this.#key[from]!, this.#a[from]!, this.#b[from]!)
  }

  #set(i: number, key: number, a: number, b: number): void {
    this.#key[i] = key
    this.#a[i] = a
    this.#b[i] = b
  }

  #grow(): void {
    const room = this.#key.length
    if (room >= this.limit) throw new RangeError(`the heap already holds its limit of ${this.limit} entries`)
    const next = Math.min(this.limit, Math.max(1, room * 2))
    const key = new Float64Array(next)
    const a = new Uint32Array(next)
    const b = new Uint32Array(next)
    key.set(this.#key)
    a.set(this.#a)
    b.set(this.#b)
    this.#key = key
    this.#a = a
    this.#b = b
  }
}

/** Whether (k1, a1, b1) comes after (k2, a2, b2) in the order by key, then a, then b. */
function above(k1: number, a1: number, b1: number, k2: number, a2: number, b2: number): boolean {
  return k1 > k2 || (k1 === k2 && (a1 > a2 || (a1 === a2 && b1 > b2)))
}
