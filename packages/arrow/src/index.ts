/**
 * @packageDocumentation
 *
 * `@dreamdb/arrow` decides how the values of one field in one bucket are stored, and
 * turns them back into Apache Arrow columns: Arrow IPC for scalars and embeddings,
 * packed fragments with a per-record sha2-256 index for binary fields (images, video), and
 * layer segments that carry their anchors. Reading one field never touches another's bytes.
 *
 * @example
 * ```ts
 * import { openStore } from '@dreamdb/cas'
 * import { readBucketColumns, writeBucketFields } from '@dreamdb/arrow'
 *
 * const store = await openStore('memory://')
 * const fields = [{ name: 'label', family: 'scalar', kind: 'categorical' }] as const
 * const objects = await writeBucketFields(store, fields, { label: ['cat', 'dog'] }, 2)
 * // ...commit a bucket { records: 2, anchorRanges, fields: objects } with @dreamdb/manifest
 * ```
 */
export {
  anchorsOf,
  type EncodedBucket,
  encodeBucket,
  putEncodedBucket,
  type ReadOptions,
  readBinaryRecord,
  readBucketColumns,
  readLayerSegment,
  writeBucketFields,
  writeLayerSegment,
} from './buckets.js'
export {
  anchorColumn,
  arrowTypeOf,
  type Codecs,
  checkVector,
  decodeField,
  type EmbeddingCodec,
  type EncodedField,
  embeddingColumn,
  encodeField,
  isCompressed,
  keysToRead,
} from './columns.js'
export * from './errors.js'
