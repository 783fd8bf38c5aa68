/**
 * @packageDocumentation
 *
 * `@dreamdb/arrow` decides how the values of one field in one bucket are stored, and
 * turns them back into Apache Arrow columns: Arrow IPC for scalars and embeddings,
 * packed fragments of bounded size with a per-record sha2-256 index for binary fields (images,
 * video), and
 * layer segments that carry their anchors. Reading one field never touches another's bytes.
 * It also builds batches out of decoded bucket columns (`BatchGatherer`): the buffer work
 * of iteration, whose order `@dreamdb/dataset` decides.
 *
 * @example
 * ```ts
 * import { openStore } from '@dreamdb/cas'
 * import { encodeBucket, putEncodedBucket } from '@dreamdb/arrow'
 *
 * const store = await openStore('memory://')
 * const fields = [{ name: 'label', family: 'scalar', kind: 'categorical' }] as const
 * const objects = await putEncodedBucket(store, encodeBucket(fields, { label: ['cat', 'dog'] }, 2))
 * // ...commit a bucket { records: 2, anchorRanges, fields: objects } with @dreamdb/manifest
 * ```
 */
export {
  anchorsOf,
  encodeBucket,
  putEncodedBucket,
  readBinaryRange,
  readBinaryRecord,
  readBucketColumns,
  readFragmentIndex,
} from './buckets.js'
export {
  anchorColumn,
  arrowTypeOf,
  type Codecs,
  type EmbeddingCodec,
  type EncodeOptions,
  FRAGMENT_BYTES,
  type FragmentIndex,
  isCompressed,
} from './columns.js'
export * from './errors.js'
export {
  BatchGatherer,
  Blocks,
  permuteCategorical,
  permuteVectorsAside,
  permuteVectorsInPlace,
  permuteWordsInPlace,
  type RowPermuter,
} from './gather.js'
export { readLayerSegment, writeLayerSegment } from './segments.js'
