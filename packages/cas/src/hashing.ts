/**
 * Where a verified read puts its bytes, and who hashes them: a backend asks the sink for
 * a buffer of the object's size, fills it, and reports how far it has written; the sink
 * hashes each stretch as it lands, so hashing overlaps the I/O still in flight.
 *
 * Large folder objects are read and hashed whole on a read thread instead
 * (backends/read-threads.ts) and handed over with `hashed`.
 */
import { availableParallelism } from 'node:os'
import { type ReadThreads, sharedReadThreads } from './backends/read-threads.js'
import { Sha256, sha256 } from './digest.js'
import type { ReadBuffers, RowOrder } from './interface.js'

/**
 * A put's bytes from this size up, in a shared buffer, are hashed on a read thread instead
 * of the caller's: the caller (an ingest encoding its next chunk) keeps its thread, and the
 * round trip (~0.1 ms) is small beside the hash (~0.6 ms a MiB with SHA-NI). Below it, or
 * in a plain ArrayBuffer (a copy to reach a worker costs main-thread time and memory; not
 * measured to pay), the caller hashes. design/0002, "Hashing a put".
 */
export const POOL_HASH_MIN_BYTES = 1 << 20

/**
 * The SHA-256 of a put's bytes: on the process's read threads when they are large and
 * shared (hashed in place, never copied or detached; the caller must not change them
 * until the put settles, as for the write), else here. An abort rejects with its reason.
 */
export async function putDigest(
  bytes: Uint8Array,
  signal?: AbortSignal,
  threads: () => ReadThreads | undefined = pooledHashing,
): Promise<Uint8Array> {
  const pool =
    bytes.byteLength >= POOL_HASH_MIN_BYTES && bytes.buffer instanceof SharedArrayBuffer
      ? threads()
      : undefined
  if (pool === undefined) return sha256(bytes)
  try {
    const { digest } = await pool.hash(bytes.buffer, bytes.byteLength, { offset: bytes.byteOffset, signal })
    return digest
  } catch {
    if (signal?.aborted) throw signal.reason
    // A read thread that died (it failed what it held): the bytes are still here.
    return sha256(bytes)
  }
}

/** The read threads, or none on one core (a worker would only take turns with the caller). */
function pooledHashing(): ReadThreads | undefined {
  return availableParallelism() > 1 ? sharedReadThreads() : undefined
}

/** Objects from this size up are read into spare buffers when the caller lends them. */
export const RECYCLE_MIN_BYTES = 64 << 10

export interface ReadSink {
  /**
   * The buffer to fill, when the size is known. Called again when a read is retried (an S3
   * body that stalled): everything before is forgotten, and hashing starts over.
   */
  buffer(size: number): Uint8Array
  /** Bytes [0, end) of the buffer are final. */
  wrote(end: number): void
  /**
   * Instead of the two above: the whole object, read and hashed elsewhere (a read thread);
   * `moved` when its rows were put in `rows`' order there, taken to begin at byte `rowsAt`.
   */
  hashed?(bytes: Uint8Array, digest: Uint8Array, moved?: boolean, rowsAt?: number): void
  /** Rows for a read thread to move once the object matched `digest` (`GetOptions.rows`). */
  readonly rows?: { order: RowOrder; digest: Uint8Array } | undefined
  /**
   * When the caller lends buffers: a shared buffer for a read thread to fill in place (only
   * the digest comes back): a spare, or with a size a new one; without a size (an S3 GET,
   * its size unknown) a spare or nothing, and one that does not fit goes back with `unused`.
   */
  spare?(size?: number): SharedArrayBuffer | undefined
  /** A spare that went unused. */
  unused?(buffer: SharedArrayBuffer): void
  /** Whether the caller lends buffers: a read thread then allocates shared ones itself. */
  readonly recycling?: boolean
  /** The object's size as the caller expects it, when known (S3 GETs are spread over the read threads by it). */
  readonly expected?: number | undefined
}

/** A sink that hashes as bytes land and, at the end, gives the bytes and their digest. */
export class HashingSink implements ReadSink {
  #hash = new Sha256()
  #bytes: Uint8Array = new Uint8Array(0)
  #hashed = 0
  /** Set when a read thread hashed the whole object. */
  #digest: Uint8Array | undefined
  readonly #buffers: ReadBuffers | undefined
  /** The bytes' whole shared buffer, which the caller may reuse once done with them. */
  #own: SharedArrayBuffer | undefined

  /** The object's size as the caller expects it, when known (a hint for `spare`). */
  readonly #expected: number | undefined
  readonly rows: { order: RowOrder; digest: Uint8Array } | undefined
  /** Whether a read thread put the rows in order (`rows`), and where it took them to begin. */
  moved = false
  rowsAt: number | undefined

  constructor(buffers?: ReadBuffers, expected?: number, rows?: { order: RowOrder; digest: Uint8Array }) {
    this.#buffers = buffers
    this.#expected = expected
    this.rows = rows
  }

  get recycling(): boolean {
    return this.#buffers !== undefined
  }

  get expected(): number | undefined {
    return this.#expected
  }

  buffer(size: number): Uint8Array {
    // Every byte is overwritten by the read, so there is no need to zero the memory.
    if (this.#buffers !== undefined && size >= RECYCLE_MIN_BYTES) {
      const own = this.#buffers.take(size) ?? new SharedArrayBuffer(size)
      this.#own = own
      this.#bytes = new Uint8Array(own, 0, size)
    } else {
      const buffer = Buffer.allocUnsafe(size)
      this.#own = undefined
      this.#bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, size)
    }
    if (this.#hashed > 0) {
      this.#hash = new Sha256()
      this.#hashed = 0
    }
    return this.#bytes
  }

  wrote(end: number): void {
    if (end > this.#hashed) this.#hash.update(this.#bytes.subarray(this.#hashed, end))
    this.#hashed = Math.max(this.#hashed, end)
  }

  hashed(bytes: Uint8Array, digest: Uint8Array, moved = false, rowsAt?: number): void {
    this.#bytes = bytes
    this.#digest = digest
    this.moved = moved
    this.rowsAt = rowsAt
    // A read thread's shared buffer (a spare or a new one) holds this object alone.
    this.#own =
      bytes.buffer instanceof SharedArrayBuffer &&
      bytes.byteOffset === 0 &&
      bytes.byteLength >= RECYCLE_MIN_BYTES
        ? bytes.buffer
        : undefined
  }

  spare(size?: number): SharedArrayBuffer | undefined {
    const want = size ?? this.#expected
    if (this.#buffers === undefined || (want !== undefined && want < RECYCLE_MIN_BYTES)) return undefined
    return this.#buffers.take(want) ?? (size === undefined ? undefined : new SharedArrayBuffer(size))
  }

  unused(buffer: SharedArrayBuffer): void {
    this.#buffers?.give(buffer)
  }

  /** After verification: the buffer goes to the lender's list of buffers in use. */
  held(): void {
    if (this.#own !== undefined) this.#buffers?.hold(this.#own)
  }

  finish(): { bytes: Uint8Array; digest: Uint8Array } {
    return { bytes: this.#bytes, digest: this.#digest ?? this.#hash.digest() }
  }
}
