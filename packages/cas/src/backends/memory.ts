import { sha256, toHex } from '../digest.js'
import type { ReadSink } from '../hashing.js'
import type {
  Backend,
  ConditionalWriteResult,
  DeleteResult,
  LeftoverEntry,
  ListedKey,
  ObjectWrite,
  StagedObject,
  VersionedBlob,
} from './backend.js'
import { NotFoundSignal } from './backend.js'

/** What a memory store holds; shared by every store opened on the same `memory://name`. */
interface MemoryState {
  objects: Map<string, Uint8Array>
  /** Last modification of each object (ms): set by a write, freshened by a dedup hit. */
  times: Map<string, number>
  blobs: Map<string, Uint8Array>
}

const named = new Map<string, MemoryState>()

/** A plain Uint8Array copy that owns its memory (`Buffer#slice` would return a view). */
function copy(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes)
}

/**
 * Objects and refs in a `Map`. `memory://` is private to the store; `memory://name` is
 * shared by every store opened on that name in this process. Values are copied in and
 * out so a caller mutating its buffer cannot change stored content.
 *
 * @internal
 */
export class MemoryBackend implements Backend {
  readonly description: string
  readonly #state: MemoryState

  constructor(name: string) {
    this.description = `memory://${name}`
    let state = name === '' ? undefined : named.get(name)
    if (state === undefined) {
      state = { objects: new Map(), times: new Map(), blobs: new Map() }
      if (name !== '') named.set(name, state)
    }
    this.#state = state
  }

  async readObject(key: string, sink: ReadSink, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted()
    const bytes = this.#state.objects.get(key)
    if (bytes === undefined) return false
    sink.buffer(bytes.byteLength).set(bytes)
    sink.wrote(bytes.byteLength)
    return true
  }

  async *streamObject(key: string, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    const bytes = this.#state.objects.get(key)
    if (bytes === undefined) throw new NotFoundSignal(key)
    const chunk = 1 << 20
    for (let offset = 0; offset < bytes.byteLength; offset += chunk) {
      signal?.throwIfAborted()
      yield copy(bytes.subarray(offset, offset + chunk))
    }
  }

  async readRange(
    key: string,
    offset: number,
    length: number,
    signal?: AbortSignal,
  ): Promise<Uint8Array | undefined | { outOfRange: true; size: number }> {
    signal?.throwIfAborted()
    const bytes = this.#state.objects.get(key)
    if (bytes === undefined) return undefined
    if (offset + length > bytes.byteLength) return { outOfRange: true, size: bytes.byteLength }
    return copy(bytes.subarray(offset, offset + length))
  }

  async objectSize(key: string, signal?: AbortSignal): Promise<number | undefined> {
    signal?.throwIfAborted()
    return this.#state.objects.get(key)?.byteLength
  }

  async freshenObject(key: string, signal?: AbortSignal): Promise<number | undefined> {
    signal?.throwIfAborted()
    const bytes = this.#state.objects.get(key)
    if (bytes !== undefined) this.#state.times.set(key, Date.now())
    return bytes?.byteLength
  }

  async writeObjectIfAbsent(key: string, bytes: Uint8Array, signal?: AbortSignal): Promise<ObjectWrite> {
    signal?.throwIfAborted()
    const existing = this.#state.objects.get(key)
    this.#state.times.set(key, Date.now())
    if (existing !== undefined) return { written: false, size: existing.byteLength }
    this.#state.objects.set(key, copy(bytes))
    return { written: true }
  }

  async replaceObject(key: string, bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    this.#state.objects.set(key, copy(bytes))
    this.#state.times.set(key, Date.now())
  }

  async stageObject(chunks: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<StagedObject> {
    const parts: Uint8Array[] = []
    for await (const chunk of chunks) {
      signal?.throwIfAborted()
      parts.push(copy(chunk))
    }
    const bytes = Buffer.concat(parts)
    return {
      size: bytes.byteLength,
      publish: (key, publishSignal) => this.writeObjectIfAbsent(key, bytes, publishSignal),
      replace: (key, publishSignal) => this.replaceObject(key, bytes, publishSignal),
      discard: async () => {},
    }
  }

  async *listObjects(prefix: string, signal?: AbortSignal): AsyncIterable<ListedKey> {
    for (const [key, bytes] of [...this.#state.objects]) {
      signal?.throwIfAborted()
      if (key.startsWith(prefix))
        yield { key, size: bytes.byteLength, mtime: this.#state.times.get(key) ?? 0 }
    }
  }

  async deleteObjects(
    keys: readonly string[],
    modifiedBefore: number | undefined,
    signal?: AbortSignal,
  ): Promise<DeleteResult[]> {
    signal?.throwIfAborted()
    return keys.map((key): DeleteResult => {
      if (!this.#state.objects.has(key)) return { key, deleted: false, reason: 'missing' }
      if (modifiedBefore !== undefined && (this.#state.times.get(key) ?? 0) >= modifiedBefore)
        return { key, deleted: false, reason: 'fresh' }
      this.#state.objects.delete(key)
      this.#state.times.delete(key)
      return { key, deleted: true }
    })
  }

  async *listLeftovers(): AsyncIterable<LeftoverEntry> {
    // Nothing is staged in memory, and a ref write is one Map update.
  }

  async deleteLeftover(): Promise<boolean> {
    return false
  }

  async readBlob(key: string, signal?: AbortSignal): Promise<VersionedBlob | undefined> {
    signal?.throwIfAborted()
    const bytes = this.#state.blobs.get(key)
    return bytes === undefined ? undefined : { bytes: copy(bytes), token: toHex(sha256(bytes)) }
  }

  async writeBlob(
    key: string,
    bytes: Uint8Array,
    expectedToken: string | null,
    signal?: AbortSignal,
  ): Promise<ConditionalWriteResult> {
    signal?.throwIfAborted()
    const current = this.#state.blobs.get(key)
    if (expectedToken === null && current !== undefined) return { ok: false, reason: 'exists' }
    if (expectedToken !== null) {
      if (current === undefined) return { ok: false, reason: 'missing' }
      if (toHex(sha256(current)) !== expectedToken) return { ok: false, reason: 'changed' }
    }
    this.#state.blobs.set(key, copy(bytes))
    return { ok: true, token: toHex(sha256(bytes)) }
  }

  async deleteBlob(
    key: string,
    expectedToken: string,
    signal?: AbortSignal,
  ): Promise<ConditionalWriteResult> {
    signal?.throwIfAborted()
    const current = this.#state.blobs.get(key)
    if (current === undefined) return { ok: false, reason: 'missing' }
    if (toHex(sha256(current)) !== expectedToken) return { ok: false, reason: 'changed' }
    this.#state.blobs.delete(key)
    return { ok: true, token: expectedToken }
  }

  async *listBlobs(prefix: string, signal?: AbortSignal): AsyncIterable<string> {
    const keys = [...this.#state.blobs.keys()].filter((key) => key.startsWith(prefix)).sort()
    for (const key of keys) {
      signal?.throwIfAborted()
      yield key
    }
  }

  async checkConditionalWrites(): Promise<void> {
    // A Map in one event loop cannot interleave a check and a write.
  }

  async close(): Promise<void> {}

  /** Set an object's last-modified time: lets tests age objects for GC. @internal */
  setModifiedForTesting(key: string, ms: number): void {
    if (!this.#state.objects.has(key)) throw new Error(`no object at ${key}`)
    this.#state.times.set(key, ms)
  }

  /** Replace stored bytes without hashing: lets tests prove that reads verify. @internal */
  corruptForTesting(key: string, bytes: Uint8Array): void {
    if (!this.#state.objects.has(key)) throw new Error(`no object at ${key}`)
    this.#state.objects.set(key, copy(bytes))
  }
}
