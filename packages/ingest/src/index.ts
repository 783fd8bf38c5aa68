/**
 * @packageDocumentation
 *
 * `@dreamdb/ingest` moves data in and out of DreamDB datasets in bulk, as a library that
 * the `dreamdb` CLI (and any program, such as the Python bridge) calls:
 *
 * - {@link ingest}: Hugging Face-style Parquet shards into a dataset, resumable (each
 *   commit records, as structured commit metadata, the shard rows it appended; a re-run
 *   appends only what is missing), any number of ingests of one dataset at once, on one
 *   machine or many, each writing the shards it claimed (shard claims, design/0006), every
 *   source column kept (other scalar columns become scalar fields; each
 *   record names its source shard and row), anchors assigned in source order.
 * - {@link exportRecords}: a dataset's records as an Arrow IPC stream or a Parquet file
 *   (`_anchor` and the fields and layers asked for), streamed batch by batch;
 *   {@link parquetStream} writes any Arrow record batches as Parquet.
 *
 * Nothing here prints or exits: progress comes through `onProgress` callbacks, failures as
 * errors with stable `ERR_INGEST_…` codes.
 *
 * @example
 * ```ts
 * import { openStore } from '@dreamdb/cas'
 * import { Repository } from '@dreamdb/manifest'
 * import { ingest } from '@dreamdb/ingest'
 *
 * const repo = new Repository(await openStore('./.dreamdb'))
 * const result = await ingest(repo, {
 *   root: './imagenet-100',            // <root>[/data]/<split>-00000-of-00017.parquet
 *   dataset: 'imagenet-100',
 *   splits: ['train', 'validation'],
 *   embedding: { kind: 'column', column: 'clip' },
 *   onProgress: (event) => {
 *     if (event.kind === 'chunk') console.log(`${event.shard} rows ${event.start}-${event.end}`)
 *   },
 * })
 * console.log(result.records) // { ingested, skipped, total }
 * ```
 */
export * from './errors.js'
export { type ExportOptions, type ExportStream, exportableFields, exportRecords } from './export.js'
export {
  CHUNK_META_FORMAT,
  type ColumnMode,
  type Committed,
  type CommittedShard,
  committedChunks,
  coreSchema,
  type EmbeddingSource,
  type IngestEvent,
  type IngestOptions,
  type IngestResult,
  ingest,
  type SourceColumn,
  type SplitSummary,
} from './ingest.js'
export {
  acquireIngestLease,
  CLAIM_PREFIX,
  claimRef,
  DEFAULT_LEASE_TTL_MS,
  decodeClaim,
  decodeLease,
  describeHolder,
  type IngestLease,
  LEASE_PREFIX,
  type LeaseHolder,
  type LeaseOptions,
  leaseRef,
} from './lease.js'
export { IMAGENET_MEAN, IMAGENET_STD, type ModelOptions } from './model.js'
export {
  DEFAULT_ROW_GROUP_BYTES,
  type ParquetCompression,
  type ParquetWriteOptions,
  parquetStream,
} from './parquet.js'
