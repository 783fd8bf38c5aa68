import type { CID } from 'multiformats/cid'

/** Every async call accepts a signal; an aborted call rejects with the signal's reason. */
export interface AbortOptions {
  signal?: AbortSignal | undefined
}

/** A value or a promise of it. */
export type Awaitable<T> = T | Promise<T>

/** Anything `for await` can walk. */
export type AwaitIterable<T> = Iterable<T> | AsyncIterable<T>

/** What a store reports while it works; libraries report, only the CLI draws. */
export type CasProgressEvent =
  | {
      type: 'dreamdb:cas:put'
      cid: CID
      size: number
      /** `false` when the object was already stored and nothing was written. */
      stored: boolean
      /**
       * `true` when a stored copy failed verification and these bytes replaced it
       * (`stored` is then `true` as well).
       */
      repaired?: boolean
    }
  | { type: 'dreamdb:cas:get'; cid: CID; size: number }

export interface ProgressOptions {
  onProgress?: (event: CasProgressEvent) => void
}

export interface PutOptions extends AbortOptions, ProgressOptions {
  /**
   * The multicodec of the returned CID: `0x55` (raw) for opaque bytes, `0x71` for
   * DAG-CBOR. Objects are keyed by their sha2-256 digest alone, so the same bytes under
   * two codecs are stored once.
   * @default 0x55
   */
  codec?: number
}

/**
 * Shared buffers an object read may fill instead of allocating its own (`BufferPool`), and
 * where the buffer holding a verified object goes, so that the caller can give it back once
 * it is done with the bytes. Reads of objects under 64 KiB ignore it.
 */
export interface ReadBuffers {
  /**
   * A spare buffer of at least `size` bytes, or `undefined` (the read allocates a shared
   * one). Without a size (an S3 GET, whose size is known only when the answer comes): any
   * spare; one that does not fit is handed back with `give`.
   */
  take(size?: number): SharedArrayBuffer | undefined
  /** A spare taken and not used. */
  give(buffer: SharedArrayBuffer): void
  /** The whole buffer that a verified object's bytes are a view of (a spare or a new one). */
  hold(buffer: SharedArrayBuffer): void
  /**
   * An object's size when the caller knows it (from its own metadata), by CID string: an
   * S3 GET, whose size comes only with the answer, then asks for a spare that fits.
   */
  sizeOf?(cid: string): number | undefined
}

/**
 * The rows of several objects read together, to be put in a new order on the read thread
 * that hashed them, before their bytes are handed over (a shuffled window's embeddings, one
 * object per bucket: @dreamdb/dataset). One object per group, shared by its parts (by
 * identity). Afterwards position `p` (row `rowOf[p]` of part `bucketOf[p]`) holds the row
 * that position `order[p]` held. Part `b` holds `counts[b]` rows of `rowBytes` bytes that
 * end `trailer` bytes before the object's end (an Arrow IPC stream: 8, its end-of-stream
 * marker); where they really lie the caller checks after decoding.
 *
 * The rows are moved only once every part has been read and has matched its CID, and then
 * in all parts or in none (a part read another way, a failed one, `signal` aborted: none).
 * A part whose get is never called holds the others until `signal` aborts: abort it once
 * every get has settled.
 */
export interface RowGroup {
  counts: readonly number[]
  rowBytes: number
  trailer: number
  bucketOf: Uint32Array
  rowOf: Uint32Array
  order: Uint32Array
  signal?: AbortSignal | undefined
}

/** One object's place in a `RowGroup`. */
export interface RowOrder {
  group: RowGroup
  part: number
  /**
   * Called, before `get` returns, when this part's rows were moved (then every part's were),
   * with the byte offset in the object where its rows were taken to begin (`trailer` and
   * `counts` applied to its size): a caller that decodes the object can check that its
   * rows lie there.
   */
  moved(at?: number): void
}

export interface GetOptions extends AbortOptions, ProgressOptions {
  /** Read into spare buffers and report the buffers used (opt-in reuse; see `ReadBuffers`). */
  buffers?: ReadBuffers | undefined
  /**
   * Put the object's rows in a new order as it is read (see `RowGroup`); a function is asked
   * per CID (`getMany`). Stores that cannot (no read threads, small objects, S3 through
   * the SDK) read the object as it is and never call `moved`.
   */
  rows?: RowOrder | ((cid: CID) => RowOrder | undefined) | undefined
}

export interface ManyOptions extends AbortOptions, ProgressOptions {
  /** For `getMany`: as `GetOptions.buffers`. */
  buffers?: ReadBuffers | undefined
  /** For `getMany`: as `GetOptions.rows`. */
  rows?: GetOptions['rows']
  /**
   * How many requests may be in flight at once.
   * @default 16
   */
  concurrency?: number
}

export interface RangeOptions extends AbortOptions {
  /** First byte to read. */
  offset: number
  /** Number of bytes to read; `offset + length` must not pass the end of the object. */
  length: number
  /**
   * The sha2-256 digest of exactly these bytes, when the caller knows it (a fragment
   * index records one per record). A ranged read cannot be checked against the
   * object's CID, so without this the bytes are returned unverified.
   */
  sha256?: Uint8Array
}

export interface HasOptions extends AbortOptions {
  /**
   * If it is stored, freshen its time as a put's dedup hit does (a folder: `utimes`; S3: a
   * copy in place when older than 10 minutes), so a GC judging it from now on keeps it. A
   * commit asks this of the objects it names but did not write (design/0008).
   */
  freshen?: boolean
}

/** One object seen by `list`. Listing knows digests, not codecs, so `cid` is raw (0x55). */
export interface ListedObject {
  cid: CID
  size: number
  /**
   * Last modification, ms since the epoch, by the store's clock (a file's mtime, S3's
   * `LastModified`). A put that finds the object already stored freshens it (design/0008).
   */
  mtime: number
}

export interface DeleteObjectsOptions extends AbortOptions {
  /**
   * Delete an object only if it was last modified before this time (ms since the epoch, the
   * store's clock), read again right before the delete: an object that a writer put again
   * (and so freshened) since it was listed survives. Without it, delete unconditionally.
   */
  modifiedBefore?: number
}

/** What `deleteObjects` did with one object. */
export interface DeletedObject {
  cid: CID
  deleted: boolean
  /** Why not: modified since `modifiedBefore`, or already gone. */
  skipped?: 'fresh' | 'missing'
}

/**
 * Leftovers of writers that died: a folder's staging files (`tmp/`) and ref temp files
 * (`<ref>.ref.tmp-*`, `<ref>.ref.lock.tmp-*`); on S3, staging objects (`tmp/`),
 * conditional-write probes (`_probe/`) and incomplete multipart uploads.
 */
export type LeftoverKind = 'staging' | 'ref-temp' | 'probe' | 'upload'

export interface Leftover {
  /** Opaque: pass it to `deleteLeftover`. */
  id: string
  kind: LeftoverKind
  /** Bytes (0 for an incomplete upload, whose parts S3 does not list here). */
  size: number
  /** Last modification (an upload: when it was started), ms since the epoch. */
  mtime: number
}

/**
 * What garbage collection needs from a store (design/0008): objects are listed with
 * `list` (with their sizes and times), deleted here, and writers' leftovers found and
 * removed. Refs are never touched.
 */
export interface StoreMaintenance {
  /** Delete objects; yields one result per CID, in input order. */
  deleteObjects(cids: AwaitIterable<CID>, options?: DeleteObjectsOptions): AsyncIterable<DeletedObject>
  /** Every leftover of a dead or running writer (the caller judges them by age). */
  listLeftovers(options?: AbortOptions): AsyncIterable<Leftover>
  /** Remove a leftover if it is still older than `modifiedBefore`; `false` when it was not removed. */
  deleteLeftover(id: string, options?: DeleteObjectsOptions): Promise<boolean>
}

export interface ListOptions extends AbortOptions {
  /** Only objects whose lowercase hex sha2-256 digest starts with this. */
  digestPrefix?: string
}

/**
 * Immutable objects addressed by the sha2-256 of their bytes.
 *
 * Reads verify: every byte returned by `get`, `getMany` and `stream` has been hashed and
 * compared with the CID, and a mismatch is an `ObjectIntegrityError` naming the CID.
 */
export interface ObjectStore {
  /**
   * Store bytes and return their CID. Putting bytes that are already stored writes
   * nothing, unless the stored copy is damaged: then these bytes replace it (checked by
   * size, and by digest for objects up to 64 KiB or found damaged by an earlier read). An async iterable is streamed (hashed on the way, staged, then published
   * under its digest), so a large object never has to sit in memory.
   *
   * @example
   * ```ts
   * const cid = await store.put(new TextEncoder().encode('hello'))
   * ```
   */
  put(data: Uint8Array | AwaitIterable<Uint8Array>, options?: PutOptions): Promise<CID>

  /** Read and verify a whole object. Missing: `ObjectNotFoundError`. */
  get(cid: CID, options?: GetOptions): Promise<Uint8Array>

  /**
   * Stream an object in chunks. The final chunk is held back until the digest has been
   * checked, so a corrupted object always ends the iteration with `ObjectIntegrityError`.
   */
  stream(cid: CID, options?: AbortOptions): AsyncIterable<Uint8Array>

  /** Read `length` bytes at `offset` (see `RangeOptions.sha256` on verification). */
  getRange(cid: CID, options: RangeOptions): Promise<Uint8Array>

  /** Whether an object with this digest is stored (one HEAD or stat; see `HasOptions.freshen`). */
  has(cid: CID, options?: HasOptions): Promise<boolean>

  /** Size in bytes, or `undefined` when absent. */
  size(cid: CID, options?: AbortOptions): Promise<number | undefined>

  /** `get` for many CIDs with bounded concurrency, yielding results in input order. */
  getMany(cids: AwaitIterable<CID>, options?: ManyOptions): AsyncIterable<{ cid: CID; bytes: Uint8Array }>

  /** `put` for many byte arrays with bounded concurrency, yielding CIDs in input order. */
  putMany(
    items: AwaitIterable<Uint8Array>,
    options?: ManyOptions & Pick<PutOptions, 'codec'>,
  ): AsyncIterable<CID>

  /** Every stored object, in no particular order. */
  list(options?: ListOptions): AsyncIterable<ListedObject>
}

/**
 * A ref as read from the store. `version` is the token a compare-and-swap must present;
 * it changes on every write, even when the value is the same.
 */
export interface RefEntry {
  name: string
  value: Uint8Array
  version: string
  /** 1 when created, +1 on every update. */
  generation: number
}

/**
 * Small named values that move only by compare-and-swap. Names are `/`-separated
 * segments of `[A-Za-z0-9._-]` (see `assertValidRefName`).
 */
export interface RefStore {
  /** The ref, or `undefined` when there is none. */
  readRef(name: string, options?: AbortOptions): Promise<RefEntry | undefined>

  /** Create-if-absent. An existing ref is a `RefConflictError` with `expectedVersion: null`. */
  createRef(name: string, value: Uint8Array, options?: AbortOptions): Promise<RefEntry>

  /**
   * Update-if-unchanged: write `value` only if the ref is still at the expected version.
   * Otherwise `RefConflictError` (moved) or `RefNotFoundError` (deleted). A write whose
   * response was lost is recognised on retry and reported as the success it was.
   *
   * `expected` is the version, or the entry the caller read (its `version` and
   * `generation`): given the entry, the store writes at once, without reading the ref
   * first to learn its generation (one request fewer; the write is conditional either way).
   */
  updateRef(
    name: string,
    value: Uint8Array,
    expected: string | Pick<RefEntry, 'version' | 'generation'>,
    options?: AbortOptions,
  ): Promise<RefEntry>

  /** Delete-if-unchanged. */
  deleteRef(name: string, expectedVersion: string, options?: AbortOptions): Promise<void>

  /** Names of the refs under a prefix (`'branches/'`), in lexicographic order. */
  listRefs(prefix?: string, options?: AbortOptions): AsyncIterable<string>
}

/** A store opened from a backend URL: objects and refs side by side. */
export interface Store extends ObjectStore, RefStore, StoreMaintenance {
  /** The backend URL with any credentials removed; safe to print. */
  readonly url: string
  /** Release sockets and file handles. */
  close(): Promise<void>
}
