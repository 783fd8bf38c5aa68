import { LRUCache } from 'lru-cache'
import type { CID } from 'multiformats/cid'
import { type Backend, NotFoundSignal } from './backends/backend.js'
import { forgoRows } from './backends/read-threads.js'
import { mapOrdered, retry } from './concurrency.js'
import { asSha256Cid, cidFromDigest, equalBytes, RAW_CODEC, Sha256, sha256, toHex } from './digest.js'
import {
  CasError,
  InvalidRangeError,
  ObjectIntegrityError,
  ObjectNotFoundError,
  RefConflictError,
  RefNotFoundError,
  StorageError,
  WriteOutcomeUnknownError,
} from './errors.js'
import { HashingSink, putDigest } from './hashing.js'
import type {
  AbortOptions,
  AwaitIterable,
  DeletedObject,
  DeleteObjectsOptions,
  GetOptions,
  HasOptions,
  Leftover,
  ListedObject,
  ListOptions,
  ManyOptions,
  PutOptions,
  RangeOptions,
  RefEntry,
  Store,
} from './interface.js'
import { digestFromObjectKey, objectKey, objectListPrefix, REFS, refKey, refNameFromKey } from './layout.js'
import {
  assertValidRefName,
  assertValidRefPrefix,
  decodeRefEnvelope,
  encodeRefEnvelope,
  newTxn,
} from './refs.js'

const DEFAULT_CONCURRENCY = 16
/** Objects handed to a backend per delete call (S3's DeleteObjects takes up to 1000). */
const DELETE_BATCH = 1000
/**
 * A put that finds its object already stored reads it back and checks its digest when it is
 * this small (design/0002, "Healing"); a larger one is checked by size, and by digest only
 * once a read in this process has found it damaged.
 */
export const VERIFY_ON_DEDUP_BYTES = 64 << 10
/** How many damaged digests a store remembers for its next put of those bytes. */
const MAX_SUSPECTS = 4096
/** How often a conditional write is retried after a server-side conflict (S3's 409). */
const MAX_TRANSIENT_RETRIES = 8
/**
 * Retries of a ref write or delete: after a conflict that left the ref at the version the
 * caller expected (a server-side race, S3's 409), never after anything else. A short
 * randomized backoff spreads writers that collided apart.
 */
const transientConflicts = (signal: AbortSignal | undefined) => ({
  attempts: MAX_TRANSIENT_RETRIES + 1,
  retryable: (error: unknown) =>
    error instanceof RefConflictError && error.actualVersion === error.expectedVersion,
  backoff: { minMs: 5, maxMs: 500 },
  signal,
})

/**
 * Whether a failed write may have been applied by the server: it was sent and no refusal
 * came back (a timeout, a lost connection, a 5xx). A 4xx answer is a refusal.
 */
function mayHaveLanded(error: unknown): boolean {
  const shape = error as { code?: unknown; mayHaveLanded?: unknown; $metadata?: { httpStatusCode?: number } }
  if (shape?.code === 'ERR_CAS_TIMEOUT') return true
  if (shape?.code === 'ERR_CAS_UNREACHABLE') return shape.mayHaveLanded !== false
  if (error instanceof CasError) return false
  const status = shape?.$metadata?.httpStatusCode
  return status === undefined || status >= 500
}

/**
 * The one implementation of `Store`: hashing, verification, dedup and the ref protocol,
 * over any `Backend`.
 *
 * @internal
 */
export class ContentStore implements Store {
  readonly url: string
  readonly #backend: Backend
  #conditionalWritesChecked: Promise<void> | undefined
  /** Digests whose stored objects failed verification on a read (the most recent MAX_SUSPECTS). */
  readonly #suspects = new LRUCache<string, true>({ max: MAX_SUSPECTS })

  constructor(backend: Backend) {
    this.#backend = backend
    this.url = backend.description
  }

  async put(data: Uint8Array | AwaitIterable<Uint8Array>, options: PutOptions = {}): Promise<CID> {
    const { signal, onProgress, codec = RAW_CODEC } = options
    signal?.throwIfAborted()
    if (data instanceof Uint8Array) {
      const digest = await putDigest(data, signal)
      const cid = cidFromDigest(digest, codec)
      const key = objectKey(toHex(digest))
      const stored = await this.#storage(
        'put',
        cid,
        async () => {
          const write = await this.#backend.writeObjectIfAbsent(key, data, signal, digest)
          if (write.written) return { stored: true, repaired: false }
          if (await this.#existingIsSound(cid, key, data.byteLength, write.size, signal))
            return { stored: false, repaired: false }
          await this.#backend.replaceObject(key, data, signal)
          return { stored: true, repaired: true }
        },
        signal,
      )
      onProgress?.({ type: 'dreamdb:cas:put', cid, size: data.byteLength, ...stored })
      return cid
    }
    const hash = new Sha256()
    async function* hashed(): AsyncGenerator<Uint8Array> {
      for await (const chunk of data as AwaitIterable<Uint8Array>) {
        hash.update(chunk)
        yield chunk
      }
    }
    const staged = await this.#storage(
      'put (staging)',
      'a streamed object',
      () => this.#backend.stageObject(hashed(), signal),
      signal,
    )
    try {
      const cid = cidFromDigest(hash.digest(), codec)
      const key = objectKey(toHex(cid.multihash.digest))
      const stored = await this.#storage(
        'put (publish)',
        cid,
        async () => {
          const write = await staged.publish(key, signal)
          if (write.written) return { stored: true, repaired: false }
          if (await this.#existingIsSound(cid, key, staged.size, write.size, signal))
            return { stored: false, repaired: false }
          await staged.replace(key, signal)
          return { stored: true, repaired: true }
        },
        signal,
      )
      onProgress?.({ type: 'dreamdb:cas:put', cid, size: staged.size, ...stored })
      return cid
    } finally {
      await staged.discard().catch(() => {})
    }
  }

  /**
   * Whether the object a put found already stored holds the right bytes. Cheap by design: a
   * size compare, plus a read and hash for small objects and for digests a read of this
   * store has found damaged. A missing object (deleted since) is not sound: it is written.
   */
  async #existingIsSound(
    cid: CID,
    key: string,
    size: number,
    knownSize: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    const hex = toHex(cid.multihash.digest)
    if (size <= VERIFY_ON_DEDUP_BYTES || this.#suspects.has(hex)) {
      if (knownSize !== undefined && knownSize !== size) return false
      const sink = new HashingSink()
      if (!(await this.#backend.readObject(key, sink, signal))) return false
      const sound = equalBytes(sink.finish().digest, cid.multihash.digest)
      if (sound) this.#suspects.delete(hex)
      return sound
    }
    const stored = knownSize ?? (await this.#backend.objectSize(key, signal))
    return stored === size
  }

  /** Remember a digest whose stored object failed verification, for the next put of it. */
  #suspect(cid: CID): void {
    this.#suspects.set(toHex(cid.multihash.digest), true)
  }

  async get(cid: CID, options: GetOptions = {}): Promise<Uint8Array> {
    const { signal, onProgress } = options
    cid = asSha256Cid(cid)
    const rows = typeof options.rows === 'function' ? options.rows(cid) : options.rows
    try {
      signal?.throwIfAborted()
      const key = objectKey(toHex(cid.multihash.digest))
      const sink = new HashingSink(
        options.buffers,
        options.buffers?.sizeOf?.(cid.toString()),
        rows && { order: rows, digest: cid.multihash.digest },
      )
      const found = await this.#storage('get', cid, () => this.#backend.readObject(key, sink, signal), signal)
      if (!found) throw new ObjectNotFoundError(cid.toString(), this.url)
      const { bytes, digest } = sink.finish()
      this.#verify(cid, digest)
      sink.held()
      if (sink.moved) rows?.moved(sink.rowsAt)
      onProgress?.({ type: 'dreamdb:cas:get', cid, size: bytes.byteLength })
      return bytes
    } finally {
      // A part that did not reach a read thread (read here, missing, failed) must not leave
      // the other parts of its group waiting for it there.
      if (rows !== undefined) forgoRows(rows)
    }
  }

  async *stream(cid: CID, options: AbortOptions = {}): AsyncIterable<Uint8Array> {
    const { signal } = options
    cid = asSha256Cid(cid)
    signal?.throwIfAborted()
    const hash = new Sha256()
    let held: Uint8Array | undefined
    try {
      for await (const chunk of this.#backend.streamObject(objectKey(toHex(cid.multihash.digest)), signal)) {
        if (held !== undefined) yield held
        hash.update(chunk)
        held = chunk
      }
    } catch (error) {
      if (error instanceof NotFoundSignal) throw new ObjectNotFoundError(cid.toString(), this.url)
      throw this.#wrap('stream', cid, error, signal)
    }
    this.#verify(cid, hash.digest())
    if (held !== undefined) yield held
  }

  async getRange(cid: CID, options: RangeOptions): Promise<Uint8Array> {
    const { offset, length, sha256: expected, signal } = options
    cid = asSha256Cid(cid)
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new InvalidRangeError(cid.toString(), offset, length, undefined)
    }
    signal?.throwIfAborted()
    const key = objectKey(toHex(cid.multihash.digest))
    const result = await this.#storage(
      'get range of',
      cid,
      () => this.#backend.readRange(key, offset, length, signal),
      signal,
    )
    if (result === undefined) throw new ObjectNotFoundError(cid.toString(), this.url)
    if (!(result instanceof Uint8Array)) {
      throw new InvalidRangeError(cid.toString(), offset, length, result.size)
    }
    if (expected !== undefined) {
      const actual = sha256(result)
      if (!equalBytes(actual, expected)) {
        throw new ObjectIntegrityError(
          `${cid.toString()}[${offset}..${offset + length})`,
          toHex(expected),
          toHex(actual),
          this.url,
        )
      }
    }
    return result
  }

  async has(cid: CID, options: HasOptions = {}): Promise<boolean> {
    if (options.freshen !== true) return (await this.size(cid, options)) !== undefined
    cid = asSha256Cid(cid)
    options.signal?.throwIfAborted()
    const key = objectKey(toHex(cid.multihash.digest))
    const size = await this.#storage(
      'stat',
      cid,
      () => this.#backend.freshenObject(key, options.signal),
      options.signal,
    )
    return size !== undefined
  }

  async size(cid: CID, options: AbortOptions = {}): Promise<number | undefined> {
    cid = asSha256Cid(cid)
    options.signal?.throwIfAborted()
    const key = objectKey(toHex(cid.multihash.digest))
    return await this.#storage(
      'stat',
      cid,
      () => this.#backend.objectSize(key, options.signal),
      options.signal,
    )
  }

  getMany(
    cids: AwaitIterable<CID>,
    options: ManyOptions = {},
  ): AsyncIterable<{ cid: CID; bytes: Uint8Array }> {
    const { concurrency = DEFAULT_CONCURRENCY, ...rest } = options
    return mapOrdered(
      cids,
      async (cid) => ({ cid, bytes: await this.get(cid, rest) }),
      concurrency,
      rest.signal,
    )
  }

  putMany(
    items: AwaitIterable<Uint8Array>,
    options: ManyOptions & Pick<PutOptions, 'codec'> = {},
  ): AsyncIterable<CID> {
    const { concurrency = DEFAULT_CONCURRENCY, ...rest } = options
    return mapOrdered(items, (bytes) => this.put(bytes, rest), concurrency, rest.signal)
  }

  async *list(options: ListOptions = {}): AsyncIterable<ListedObject> {
    const { digestPrefix = '', signal } = options
    if (!/^[0-9a-f]{0,64}$/.test(digestPrefix)) {
      throw new RangeError(`digestPrefix must be lowercase hex, got '${digestPrefix}'`)
    }
    try {
      for await (const { key, size, mtime } of this.#backend.listObjects(
        objectListPrefix(digestPrefix),
        signal,
      )) {
        const hex = digestFromObjectKey(key)
        if (hex === undefined || !hex.startsWith(digestPrefix)) continue
        yield { cid: cidFromDigest(Buffer.from(hex, 'hex'), RAW_CODEC), size, mtime }
      }
    } catch (error) {
      throw this.#wrap('list', `objects with digest prefix '${digestPrefix}'`, error, signal)
    }
  }

  async *deleteObjects(
    cids: AwaitIterable<CID>,
    options: DeleteObjectsOptions = {},
  ): AsyncIterable<DeletedObject> {
    const { signal, modifiedBefore } = options
    let batch: CID[] = []
    const flush = async function* (this: ContentStore, cids: CID[]): AsyncIterable<DeletedObject> {
      const keys = cids.map((cid) => objectKey(toHex(asSha256Cid(cid).multihash.digest)))
      const results = await this.#storage(
        'delete',
        `${keys.length} objects`,
        () => this.#backend.deleteObjects(keys, modifiedBefore, signal),
        signal,
      )
      for (let i = 0; i < cids.length; i++) {
        const result = results[i]!
        yield result.deleted
          ? { cid: cids[i]!, deleted: true }
          : { cid: cids[i]!, deleted: false, skipped: result.reason }
      }
    }
    for await (const cid of cids) {
      signal?.throwIfAborted()
      batch.push(cid)
      if (batch.length >= DELETE_BATCH) {
        yield* flush.call(this, batch)
        batch = []
      }
    }
    if (batch.length > 0) yield* flush.call(this, batch)
  }

  async *listLeftovers(options: AbortOptions = {}): AsyncIterable<Leftover> {
    try {
      yield* this.#backend.listLeftovers(options.signal)
    } catch (error) {
      throw this.#wrap('list', 'leftovers of writers', error, options.signal)
    }
  }

  deleteLeftover(id: string, options: DeleteObjectsOptions = {}): Promise<boolean> {
    return this.#storage(
      'delete leftover',
      id,
      () => this.#backend.deleteLeftover(id, options.modifiedBefore, options.signal),
      options.signal,
    )
  }

  async readRef(name: string, options: AbortOptions = {}): Promise<RefEntry | undefined> {
    assertValidRefName(name)
    options.signal?.throwIfAborted()
    const blob = await this.#storage(
      'read ref',
      name,
      () => this.#backend.readBlob(refKey(name), options.signal),
      options.signal,
    )
    if (blob === undefined) return undefined
    const envelope = decodeRefEnvelope(name, this.url, blob.bytes)
    return { name, value: envelope.value, version: blob.token, generation: envelope.generation }
  }

  createRef(name: string, value: Uint8Array, options: AbortOptions = {}): Promise<RefEntry> {
    return this.#writeRef(name, value, null, 1, options.signal)
  }

  async updateRef(
    name: string,
    value: Uint8Array,
    expected: string | Pick<RefEntry, 'version' | 'generation'>,
    options: AbortOptions = {},
  ): Promise<RefEntry> {
    assertValidRefName(name)
    if (typeof expected !== 'string') {
      if (!Number.isSafeInteger(expected.generation) || expected.generation < 1) {
        throw new TypeError(`Ref '${name}': the expected entry's generation must be a positive integer`)
      }
      // The caller read the ref: its version decides the conditional write, and a moved or
      // deleted ref is found by #writeRef's re-read after the write is refused.
      return await this.#writeRef(name, value, expected.version, expected.generation + 1, options.signal)
    }
    const expectedVersion = expected
    const current = await this.readRef(name, options)
    if (current === undefined) throw new RefNotFoundError(name, this.url)
    if (current.version !== expectedVersion) {
      throw new RefConflictError(name, expectedVersion, current.version, this.url)
    }
    return await this.#writeRef(name, value, expectedVersion, current.generation + 1, options.signal)
  }

  async deleteRef(name: string, expectedVersion: string, options: AbortOptions = {}): Promise<void> {
    assertValidRefName(name)
    const { signal } = options
    await this.#ensureConditionalWrites(signal)
    await retry(async () => {
      const result = await this.#storage(
        'delete ref',
        name,
        () => this.#backend.deleteBlob(refKey(name), expectedVersion, signal),
        signal,
      )
      if (result.ok) return
      if (result.reason === 'missing') throw new RefNotFoundError(name, this.url)
      const current = await this.readRef(name, { signal })
      if (current === undefined) throw new RefNotFoundError(name, this.url)
      // Still at the expected version: a transient server-side race, retried (above).
      throw new RefConflictError(name, expectedVersion, current.version, this.url)
    }, transientConflicts(signal))
  }

  async *listRefs(prefix = '', options: AbortOptions = {}): AsyncIterable<string> {
    assertValidRefPrefix(prefix)
    options.signal?.throwIfAborted()
    try {
      for await (const key of this.#backend.listBlobs(`${REFS}${prefix}`, options.signal)) {
        const name = refNameFromKey(key)
        if (name !== undefined) yield name
      }
    } catch (error) {
      throw this.#wrap('list refs', `with prefix '${prefix}'`, error, options.signal)
    }
  }

  async close(): Promise<void> {
    await this.#backend.close()
  }

  /**
   * The compare-and-swap protocol. The body carries a fresh txn id; whenever the outcome
   * is unclear (an error after the request left, or a precondition failure that could be
   * our own earlier attempt succeeding) the ref is re-read, and finding our txn there
   * means the write landed.
   */
  async #writeRef(
    name: string,
    value: Uint8Array,
    expectedVersion: string | null,
    generation: number,
    signal: AbortSignal | undefined,
  ): Promise<RefEntry> {
    assertValidRefName(name)
    if (!(value instanceof Uint8Array)) throw new TypeError(`Ref '${name}': value must be a Uint8Array`)
    signal?.throwIfAborted()
    await this.#ensureConditionalWrites(signal)
    const txn = newTxn()
    const body = encodeRefEnvelope({ generation, txn, value })
    const key = refKey(name)
    return await retry(async () => {
      let result: Awaited<ReturnType<Backend['writeBlob']>>
      try {
        result = await this.#backend.writeBlob(key, body, expectedVersion, signal)
      } catch (error) {
        if (signal?.aborted) throw signal.reason
        // Never sent (connection refused, no such host) or refused (503): nothing was written.
        if ((error as { mayHaveLanded?: unknown }).mayHaveLanded === false) throw error
        const ambiguous = this.#backend.ambiguousWrites === true && mayHaveLanded(error)
        let mine: RefEntry | undefined
        try {
          mine = await this.#ownWrite(name, txn, signal)
        } catch (readError) {
          if (signal?.aborted) throw signal.reason
          if (ambiguous) throw new WriteOutcomeUnknownError(name, expectedVersion, this.url, { cause: error })
          throw readError
        }
        if (mine !== undefined) return mine
        // Sent, unanswered, and not there yet: it may still land, so it must not be sent
        // again nor reported as failed. The caller finds out (design/0003).
        if (ambiguous) throw new WriteOutcomeUnknownError(name, expectedVersion, this.url, { cause: error })
        throw this.#wrap('write ref', name, error, signal)
      }
      if (result.ok) return { name, value, version: result.token, generation }
      const mine = await this.#ownWrite(name, txn, signal)
      if (mine !== undefined) return mine
      const current = await this.readRef(name, { signal })
      if (result.reason === 'missing' || (expectedVersion !== null && current === undefined)) {
        throw new RefNotFoundError(name, this.url)
      }
      // Still at the expected version (absent, for a create): a transient server-side race,
      // retried (above); moved: a conflict for the caller.
      throw new RefConflictError(name, expectedVersion, current?.version ?? null, this.url)
    }, transientConflicts(signal))
  }

  async #ownWrite(name: string, txn: string, signal: AbortSignal | undefined): Promise<RefEntry | undefined> {
    const blob = await this.#storage(
      'read ref',
      name,
      () => this.#backend.readBlob(refKey(name), signal),
      signal,
    )
    if (blob === undefined) return undefined
    const envelope = decodeRefEnvelope(name, this.url, blob.bytes)
    if (envelope.txn !== txn) return undefined
    return { name, value: envelope.value, version: blob.token, generation: envelope.generation }
  }

  #ensureConditionalWrites(signal: AbortSignal | undefined): Promise<void> {
    if (this.#conditionalWritesChecked === undefined) {
      const check = this.#backend.checkConditionalWrites(signal)
      this.#conditionalWritesChecked = check
      // A failed or aborted check is not remembered: the next write probes again.
      check.catch(() => {
        if (this.#conditionalWritesChecked === check) this.#conditionalWritesChecked = undefined
      })
    }
    return this.#conditionalWritesChecked
  }

  #verify(cid: CID, actual: Uint8Array): void {
    if (!equalBytes(actual, cid.multihash.digest)) {
      this.#suspect(cid)
      throw new ObjectIntegrityError(cid.toString(), toHex(cid.multihash.digest), toHex(actual), this.url)
    }
  }

  async #storage<T>(
    operation: string,
    target: unknown,
    fn: () => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    try {
      return await fn()
    } catch (error) {
      throw this.#wrap(operation, target, error, signal)
    }
  }

  /**
   * Aborts surface as the signal's reason (backends report them in many shapes), our own
   * typed errors pass through, and anything else becomes a StorageError keeping its cause.
   */
  #wrap(operation: string, target: unknown, error: unknown, signal?: AbortSignal): unknown {
    if (signal?.aborted) return signal.reason
    if (error instanceof CasError || (error instanceof Error && error.name === 'AbortError')) return error
    return new StorageError(operation, String(target), this.url, { cause: error })
  }
}
