/**
 * Where a verified read puts its bytes, and who hashes them: a backend asks the sink for
 * a buffer of the object's size, fills it, and reports how far it has written; the sink
 * hashes each stretch as it lands, so hashing overlaps the I/O still in flight.
 *
 * Hashing on a worker thread over shared memory was tried and measured (bench/cas.ts,
 * design/0002): on this 2-core machine it was slower for every size, so hashing stays
 * on the calling thread.
 */
import { Sha256 } from './digest.js'

export interface ReadSink {
  /** The buffer to fill; called once, when the size is known. */
  buffer(size: number): Uint8Array
  /** Bytes [0, end) of the buffer are final. */
  wrote(end: number): void
}

/** A sink that hashes as bytes land and, at the end, gives the bytes and their digest. */
export class HashingSink implements ReadSink {
  readonly #hash = new Sha256()
  #bytes = new Uint8Array(0)
  #hashed = 0

  buffer(size: number): Uint8Array {
    // Every byte is overwritten by the read, so there is no need to zero the memory.
    const buffer = Buffer.allocUnsafe(size)
    this.#bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, size)
    return this.#bytes
  }

  wrote(end: number): void {
    if (end > this.#hashed) this.#hash.update(this.#bytes.subarray(this.#hashed, end))
    this.#hashed = Math.max(this.#hashed, end)
  }

  finish(): { bytes: Uint8Array; digest: Uint8Array } {
    return { bytes: this.#bytes, digest: this.#hash.digest() }
  }
}
