/**
 * @packageDocumentation
 *
 * `@dreamdb/cas` is the bottom layer of DreamDB: immutable objects addressed by the
 * sha2-256 of their bytes (CIDv1), and small named refs that move only by
 * compare-and-swap. The same store runs on a folder (the embedded default), in memory,
 * or on any S3-compatible server.
 *
 * - Every read is verified against its CID; a mismatch is an `ObjectIntegrityError`.
 * - Putting bytes that are already stored writes nothing.
 * - Refs are created if absent or updated if unchanged; a lost race is a
 *   `RefConflictError`, never a silent overwrite, and a write whose response was lost is
 *   recognised as the success it was.
 *
 * @example
 * ```ts
 * import { openStore } from '@dreamdb/cas'
 *
 * const store = await openStore('./.dreamdb')
 * const cid = await store.put(new TextEncoder().encode('hello'))
 * const bytes = await store.get(cid) // verified against the CID
 *
 * const head = await store.createRef('branches/main', new TextEncoder().encode(cid.toString()))
 * await store.updateRef('branches/main', bytes, head.version) // fails if someone moved it first
 * await store.close()
 * ```
 */

export { permuteRows } from './backends/permute-rows.js'
export { type RowPermutation, readThreadsForWork } from './backends/read-threads.js'
export { BufferPool } from './buffer-pool.js'
export { decodeStrict, encodeStrict, type StrictDecoder, type StrictMap, shape } from './dag-cbor.js'
export { cidFromDigest, cidOf, DAG_CBOR_CODEC, parseCid, RAW_CODEC } from './digest.js'
export * from './errors.js'
export type * from './interface.js'
export { type OpenStoreOptions, openStore, type S3ClientLike } from './open.js'
export { assertValidRefName } from './refs.js'
export { type BackendLocation, parseBackendUrl } from './url.js'
