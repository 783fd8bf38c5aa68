/**
 * @packageDocumentation
 *
 * `@dreamdb/dataset` is DreamDB's user API, the seed's workflow in TypeScript: open a
 * dataset by name, pin a snapshot, stream Arrow record batches into training, branch per
 * sweep configuration, write each run's predictions as a layer, compare runs side by side,
 * and tag the winner, while the dataset keeps growing and snapshots stay pinned.
 *
 * @example
 * ```ts
 * import { Dataset, compareRefs, agreementMatrix } from '@dreamdb/dataset'
 *
 * const ds = await Dataset.create('corpus', {
 *   backend: './.dreamdb',
 *   schema: { fields: [
 *     { name: 'embedding', family: 'embedding', dim: 4 },
 *     { name: 'label', family: 'scalar', kind: 'categorical' },
 *   ] },
 * })
 * await ds.appendMany([{ embedding: [1, 0, 0, 0], label: 'cat' }, { embedding: [0, 1, 0, 0], label: 'dog' }])
 * const snap = await ds.snapshot('prep-v1')
 * const pinned = await Dataset.openAt(snap, { backend: './.dreamdb' })
 * for await (const batch of pinned.iterArrowBatches({ batchSize: 256, fields: ['embedding', 'label'], shuffleSeed: 42 })) {
 *   // batch.getChild('embedding'): FixedSizeList<Float32>[4]; batch.getChild('_anchor'): Uint64
 * }
 * const run = await ds.branch('sweep/lr0.01')
 * await run.addScalarLayer('prediction', 'embedding', 'categorical', [[1n, 'cat'], [2n, 'cat']])
 * const table = await compareRefs({ refs: ['sweep/lr0.01'], fields: ['prediction'], backend: './.dreamdb' })
 * ```
 */

export type { AppendOptions, DatasetRecord } from './append.js'
export { type TrainCodecOptions, trainEmbeddingCodec } from './codecs.js'
export type { CompactOptions, CompactProgress } from './compact.js'
export { type AgreementMatrix, agreementMatrix, type CompareOptions, compareRefs } from './compare.js'
export { type BackendOptions, Dataset } from './dataset.js'
export * from './errors.js'
export type { FieldChangeOptions } from './fields.js'
export type { BatchStream, IterOptions, ResumeState } from './iterate.js'
export type { DropLayerOptions, EmbeddingLayerInit, Sample } from './layers.js'
export type { MergeOptions } from './merge.js'
export type { MigrateOptions } from './migrate.js'
export type { RestoreOptions } from './restore.js'
export type { SearchHits, SearchManyHits, SearchOptions, SearchQueries } from './search.js'
