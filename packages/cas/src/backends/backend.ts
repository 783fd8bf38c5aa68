/**
 * The small set of primitives each backend implements. Hashing, verification, the ref
 * envelope and the compare-and-swap protocol live once, in `content-store.ts`, on top of
 * these. Keys are the relative keys of `layout.ts`.
 *
 * @internal
 */
import type { ReadSink } from '../hashing.js'

/** One key as listed. */
export interface ListedKey {
  key: string
  size: number
  /** Last modification, ms since the epoch, by the store's clock. */
  mtime: number
}

/** What `deleteObjects` did with one key. */
export type DeleteResult =
  | { key: string; deleted: true }
  | { key: string; deleted: false; reason: 'fresh' | 'missing' }

/** Something a dead writer left behind (see `LeftoverKind` in interface.ts). */
export interface LeftoverEntry {
  id: string
  kind: 'staging' | 'ref-temp' | 'probe' | 'upload'
  size: number
  mtime: number
}

/** A ref object as read, with the token a conditional write must present. */
export interface VersionedBlob {
  bytes: Uint8Array
  /** S3: the ETag. Folder and memory: the hex sha2-256 of `bytes`. */
  token: string
}

/** The outcome of a conditional write that the server answered. */
export type ConditionalWriteResult =
  | { ok: true; token: string }
  | { ok: false; reason: 'exists' | 'changed' | 'missing' }

/**
 * What an object write found: `written`, or an object already there, with its size when
 * the backend learnt it on the way (so the store can judge whether it is damaged).
 */
export type ObjectWrite = { written: true } | { written: false; size?: number }

/**
 * Bytes streamed to a temporary place, waiting to be published under their digest. The
 * staging stays until `discard`, which the caller always calls last.
 */
export interface StagedObject {
  size: number
  /** Publish under `key` unless an object is there already. */
  publish(key: string, signal?: AbortSignal): Promise<ObjectWrite>
  /** Publish under `key`, replacing what is there (a damaged copy). */
  replace(key: string, signal?: AbortSignal): Promise<void>
  discard(): Promise<void>
}

export interface Backend {
  /** The backend URL with credentials removed. */
  readonly description: string

  /**
   * `true` where a ref write that got no answer may still be applied later (S3): the store
   * then reports `WriteOutcomeUnknownError` instead of assuming it failed.
   */
  readonly ambiguousWrites?: boolean

  /**
   * Read a whole object into `sink.buffer(size)`, reporting progress with `sink.wrote`
   * as bytes land (so hashing overlaps I/O). `false` when the object is missing.
   */
  readObject(key: string, sink: ReadSink, signal?: AbortSignal): Promise<boolean>

  /** Chunks of an object; throws `NotFoundSignal` when missing. */
  streamObject(key: string, signal?: AbortSignal): AsyncIterable<Uint8Array>

  /** `length` bytes at `offset`; `undefined` when missing; `'out-of-range'` with the size. */
  readRange(
    key: string,
    offset: number,
    length: number,
    signal?: AbortSignal,
  ): Promise<Uint8Array | undefined | { outOfRange: true; size: number }>

  /** The object's size, or `undefined` when it is absent. */
  objectSize(key: string, signal?: AbortSignal): Promise<number | undefined>

  /**
   * `objectSize`, and if the object is there, freshen its time as a dedup hit does, so a GC
   * judging it from now on sees it as young (design/0008).
   */
  freshenObject(key: string, signal?: AbortSignal): Promise<number | undefined>

  /**
   * Write bytes under `key` unless something is already there. `sha256`, when given, is the
   * SHA-256 of exactly `bytes` (the content store's key digest): a backend whose protocol
   * sends one (S3's signed payload) uses it instead of hashing the bytes again.
   */
  writeObjectIfAbsent(
    key: string,
    bytes: Uint8Array,
    signal?: AbortSignal,
    sha256?: Uint8Array,
  ): Promise<ObjectWrite>

  /** Write bytes under `key`, atomically replacing what is there (a damaged copy). */
  replaceObject(key: string, bytes: Uint8Array, signal?: AbortSignal): Promise<void>

  /** Stream chunks to a staging place; the caller publishes once it knows the digest. */
  stageObject(chunks: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<StagedObject>

  /**
   * Keys, sizes and last-modified times (ms since the epoch, by the store's clock: a file's
   * mtime, S3's `LastModified`) of the objects whose key starts with `prefix`.
   */
  listObjects(prefix: string, signal?: AbortSignal): AsyncIterable<ListedKey>

  /**
   * Delete objects (design/0008). With `modifiedBefore`, an object is deleted only if its
   * last-modified time, read again right before the delete, is still older: one a writer
   * has freshened since it was listed survives (`'fresh'`). Results in input order.
   */
  deleteObjects(
    keys: readonly string[],
    modifiedBefore: number | undefined,
    signal?: AbortSignal,
  ): Promise<DeleteResult[]>

  /**
   * What writers leave behind when they die: staging files or uploads, ref temp files,
   * probes. Never an object or a ref.
   */
  listLeftovers(signal?: AbortSignal): AsyncIterable<LeftoverEntry>

  /** Remove one leftover (by the `id` `listLeftovers` gave) if still older than `modifiedBefore`. */
  deleteLeftover(id: string, modifiedBefore: number | undefined, signal?: AbortSignal): Promise<boolean>

  /** A ref object and its version token, or `undefined`. */
  readBlob(key: string, signal?: AbortSignal): Promise<VersionedBlob | undefined>

  /**
   * Conditional write of a ref object: create-if-absent when `expectedToken` is `null`,
   * otherwise replace-if-token-matches. May throw when the outcome is unknown (a lost
   * response); the caller then re-reads to find out.
   */
  writeBlob(
    key: string,
    bytes: Uint8Array,
    expectedToken: string | null,
    signal?: AbortSignal,
  ): Promise<ConditionalWriteResult>

  /** Delete a ref object if its token still matches. */
  deleteBlob(key: string, expectedToken: string, signal?: AbortSignal): Promise<ConditionalWriteResult>

  /** Keys under `prefix`, lexicographically. */
  listBlobs(prefix: string, signal?: AbortSignal): AsyncIterable<string>

  /**
   * Prove that conditional writes are enforced, before the first ref write. Throws
   * `ConditionalWritesUnsupportedError` when they are not.
   */
  checkConditionalWrites(signal?: AbortSignal): Promise<void>

  close(): Promise<void>
}

/** Thrown by `streamObject` when the object does not exist. @internal */
export class NotFoundSignal extends Error {
  override readonly name = 'NotFoundSignal'
}
