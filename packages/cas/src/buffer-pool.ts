/**
 * Spare buffers for object reads, so that a reader that is done with an object's bytes can
 * hand its buffer back for the next read instead of leaving it to the garbage collector
 * (every verified read is otherwise a new ArrayBuffer; in an iteration pass V8 collected
 * them in 25-37% of the main thread, design/0005).
 *
 * The buffers are SharedArrayBuffers: a read thread fills one in place and only the digest
 * comes back. A buffer transferred to a thread and back would be a new ArrayBuffer object
 * each way, and V8 counts each as new external memory (measured: as many collections as
 * without reuse).
 */

/** A bounded set of spare shared buffers, given back by readers that are done with them. */
export class BufferPool {
  readonly maxBytes: number
  #spare: SharedArrayBuffer[] = []
  #bytes = 0

  /** @param maxBytes Spare bytes kept at most; a buffer given beyond this is dropped (left to the GC). */
  constructor(options: { maxBytes?: number } = {}) {
    this.maxBytes = options.maxBytes ?? 256 << 20
  }

  /** Bytes held as spares now. */
  get bytes(): number {
    return this.#bytes
  }

  /** Spare buffers held now. */
  get count(): number {
    return this.#spare.length
  }

  /**
   * A spare of at least `size` bytes and at most twice that (a large buffer is not pinned
   * under a small object), the smallest that fits; without a size, the last one given.
   */
  take(size?: number): SharedArrayBuffer | undefined {
    let best = -1
    for (let i = this.#spare.length - 1; i >= 0; i--) {
      const length = this.#spare[i]!.byteLength
      if (size === undefined) {
        best = i
        break
      }
      if (length >= size && length <= 2 * size && (best < 0 || length < this.#spare[best]!.byteLength))
        best = i
    }
    if (best < 0) return undefined
    const [buffer] = this.#spare.splice(best, 1)
    this.#bytes -= buffer!.byteLength
    return buffer
  }

  /**
   * Keep `buffer` as a spare. The caller must hold no view of it that it still reads: the
   * next read overwrites it.
   */
  give(buffer: SharedArrayBuffer): void {
    if (buffer.byteLength === 0 || this.#bytes + buffer.byteLength > this.maxBytes) return
    if (this.#spare.includes(buffer)) return
    this.#spare.push(buffer)
    this.#bytes += buffer.byteLength
  }

  /** Drop every spare. */
  clear(): void {
    this.#spare = []
    this.#bytes = 0
  }
}
