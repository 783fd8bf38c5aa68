import type { CID } from 'multiformats/cid'

/** The scalar kinds a field can hold. */
export type ScalarKind = 'categorical' | 'string' | 'int' | 'float' | 'bool' | 'timestamp'
export const SCALAR_KINDS: readonly ScalarKind[] = [
  'categorical',
  'string',
  'int',
  'float',
  'bool',
  'timestamp',
]

/** What a binary field's bytes are. */
export type BinaryMedia = 'image' | 'video' | 'audio' | 'bytes'
export const BINARY_MEDIA: readonly BinaryMedia[] = ['image', 'video', 'audio', 'bytes']

/**
 * The distance an embedding field is compared with, as the schema names it. `@dreamdb/vector`
 * (which does not sit on this package) defines the same three values as its own `Metric`.
 */
export type Metric = 'cosine' | 'l2' | 'ip'
export const METRICS: readonly Metric[] = ['cosine', 'l2', 'ip']

/** Image, video, audio or other bytes, one value per record. */
export interface BinaryField {
  name: string
  family: 'binary'
  media: BinaryMedia
}

/** A fixed-dimension float vector per record, optionally indexed and compressed. */
export interface EmbeddingField {
  name: string
  family: 'embedding'
  dim: number
  metric: Metric
  /** e.g. `dreamdb.ivf-cosine`; `null` stores plain float32 vectors. */
  algorithm: string | null
  /** The trained spatial index (IVF centroids) this field's codes refer to. */
  spatialIndex: CID | null
  /** The vector compressor (rotation and quantizer) that encodes and decodes this field. */
  compressor: CID | null
  /** Whether full-precision vectors are kept beside the codes, for reranking. */
  rerank: boolean
}

/** A typed scalar per record. */
export interface ScalarField {
  name: string
  family: 'scalar'
  kind: ScalarKind
}

export type Field = BinaryField | EmbeddingField | ScalarField

/** The base fields every appended record has values for. */
export interface Schema {
  fields: Field[]
}

/** One stored object holding a field's values for one bucket or segment. */
export interface FieldObject {
  cid: CID
  /** Its size in bytes. */
  bytes: number
}

/**
 * A run of record ids: `count` anchors starting at `start`. Anchors are uint64; they are
 * minted in blocks by a compare-and-swap counter, so ranges never overlap across writers.
 */
export interface AnchorRange {
  start: bigint
  count: number
}

/**
 * The values of some records, one object per field. In the timeline a bucket is a group
 * of appended records, with its anchors as ranges in record order. In a layer it is a
 * segment: the anchors it covers are inside its objects, and `anchorRanges` is `null`.
 */
export interface Bucket {
  records: number
  anchorMin: bigint
  anchorMax: bigint
  anchorRanges: AnchorRange[] | null
  /** Append time of the oldest and newest record, in ms since the epoch. */
  timeMin: number
  timeMax: number
  /**
   * Objects by key: `<field>` holds the field's values; `<field>/<part>` holds extra parts
   * of the same field (an index, full vectors for rerank). Every base field has its key.
   */
  fields: Record<string, FieldObject>
}

/** Values added later for some anchors (predictions, student embeddings), named after their field. */
export interface Layer {
  /** Equals `field.name`. */
  name: string
  /** The field the layer's values derive from (`'embedding'` for a prediction). */
  parent: string
  field: Field
  /** Root of the layer's segment tree. */
  segments: CID | null
  records: number
  bytes: number
}

/** What one commit changed, kept in the manifest for `log` and for rebasing. */
export type Change =
  | { kind: 'create' }
  | { kind: 'append'; buckets: number; records: number }
  | { kind: 'layer'; name: string; segments: number; records: number }
  | { kind: 'schema'; added: string[]; replaced: string[] }
  | { kind: 'compact'; start: number; replaced: number; buckets: number }
  | { kind: 'migrate'; field: string; buckets: number }
  | { kind: 'drop'; layer: string; records: number }
  | { kind: 'drop-field'; field: string; buckets: number }
  | { kind: 'restore'; from: CID }
  | { kind: 'merge'; from: CID; buckets: number; records: number; layers: string[] }

/** A value in a commit's `meta`: plain data only, so every reader sees the same thing. */
export type MetaValue = string | number | boolean | null | MetaValue[] | { [key: string]: MetaValue }

/**
 * Structured metadata a commit carries beside its message (ingest progress, a run's
 * settings): string keys to strings, safe integers, booleans, null, lists and maps, at
 * most 16 KiB encoded. Readers take it as data; nothing in DreamDB interprets it.
 */
export type CommitMeta = { [key: string]: MetaValue }

export interface ManifestStats {
  records: number
  buckets: number
  /** Bytes of stored objects per field (base fields and layers). */
  bytes: Record<string, number>
}

/** One immutable state of a dataset. Its CID is its identity. */
export interface Manifest {
  schema: Schema
  /** Root of the timeline tree; `null` before the first append. */
  timeline: CID | null
  /** Sorted by name. */
  layers: Layer[]
  /** The manifests this one was made from (the DAG); empty for a new dataset. */
  parents: CID[]
  message: string
  /** ms since the epoch, when the commit was made. */
  timestamp: number
  change: Change
  stats: ManifestStats
  /** The commit's structured metadata; absent when it had none (then the key is not stored). */
  meta?: CommitMeta
}

export type RefKind = 'branch' | 'snapshot'

/** What a ref points at. Branches move; snapshots never do. */
export interface RefTarget {
  kind: RefKind
  manifest: CID
  timeline: CID | null
}

/** A summary of a subtree of the timeline, kept in its parent node. */
export interface TreeChild {
  node: CID
  buckets: number
  records: number
  bytes: number
  anchorMin: bigint
  anchorMax: bigint
  timeMin: number
  timeMax: number
}

/** A node of a bucket tree (timeline or layer segments). All leaves sit at level 0. */
export type TreeNode = { level: 0; buckets: Bucket[] } | { level: number; children: TreeChild[] }
