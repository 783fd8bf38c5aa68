/**
 * @packageDocumentation
 *
 * `@dreamdb/manifest` is DreamDB's versioned data model on top of `@dreamdb/cas`. Every
 * state of a dataset is an immutable manifest (canonical DAG-CBOR, addressed by CID):
 * its schema, its timeline of buckets in append order, its layers, its parents. Refs name
 * manifests: branches move by compare-and-swap, snapshots never move. Commits from many
 * writers land without losing an update: a writer that loses the race rebases on the new
 * head when the changes commute (append with append, layers with appends, ...), and
 * fails with a typed conflict naming both manifests when they do not.
 *
 * @example
 * ```ts
 * import { openStore } from '@dreamdb/cas'
 * import { Repository } from '@dreamdb/manifest'
 *
 * const repo = new Repository(await openStore('./.dreamdb'))
 * await repo.createDataset('corpus', { schema: { fields: [{ name: 'label', family: 'scalar', kind: 'categorical' }] } })
 * const labels = await repo.store.put(new TextEncoder().encode('["cat","dog"]'))
 * const start = await repo.mintAnchors(2)
 * await repo.commit('corpus', {
 *   kind: 'append',
 *   buckets: [{ records: 2, anchorRanges: [{ start, count: 2 }], fields: { label: { cid: labels, bytes: 13 } } }],
 * })
 * const snap = await repo.snapshot('corpus-v1', 'corpus') // { label, manifest, timeline }
 * ```
 */

export type { ChangeRequest } from './changes/index.js'
export { decodeManifest, decodeRefTarget, encodeManifest, encodeRefTarget, FORMAT_VERSION } from './codec.js'
export type { CommitOptions, CommitResult } from './commit.js'
export * from './errors.js'
export { type Counted, type FsckObject, type FsckOptions, type FsckReport, fsck } from './fsck.js'
export {
  checkGrace,
  collectGarbage,
  DEFAULT_GRACE_MS,
  type GcOptions,
  type GcReport,
  MIN_GRACE_MS,
  SWEEP_FENCE_REF,
} from './gc.js'
export {
  type Diff,
  diff,
  type InspectedBucket,
  type InspectedObject,
  type Inspection,
  inspect,
  type LogEntry,
  log,
} from './history.js'
export { type DeletedRef, type DeleteRefOptions, deleteRef } from './lifecycle.js'
export { checkMeta, MAX_META_BYTES } from './meta.js'
export type * from './model.js'
export { assertUserRefName, MAX_USER_REF_NAME } from './names.js'
export { isDamage, type RefInfo, type RefStatus, type SnapshotInfo } from './refs.js'
export { Repository, type RepositoryInit, type Resolved, type Source } from './repository.js'
export { type BucketInput, checkLayer, type FieldInput } from './schema.js'
export {
  digestKey,
  type Reached,
  type ReachedKind,
  readRoots,
  type UnreadableRef,
  type WalkedRef,
  type WalkOptions as ReachableWalkOptions,
  type WalkProblem,
  type WalkResult,
  walkReachable,
} from './walk.js'
