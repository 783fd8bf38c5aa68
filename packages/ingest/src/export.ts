/**
 * A dataset's records out as a file's bytes: an Arrow IPC stream or a Parquet file of
 * `_anchor` (uint64) and the fields and layers asked for, with their Arrow types, streamed
 * batch by batch from `iterArrowBatches` (memory holds about one batch, or one Parquet row
 * group). What the CLI's `export --format arrow|parquet` writes, for any program.
 */
import { pipeline, Readable } from 'node:stream'
import { arrowTypeOf } from '@dreamdb/arrow'
import { type Dataset, UnknownFieldError } from '@dreamdb/dataset'
import type { Field } from '@dreamdb/manifest'
import {
  Field as ArrowField,
  type RecordBatch,
  RecordBatchStreamWriter,
  Schema,
  Table,
  tableToIPC,
  Uint64,
} from 'apache-arrow'
import { type ParquetCompression, parquetStream } from './parquet.js'

export interface ExportOptions {
  format: 'arrow' | 'parquet'
  /** Fields and layers to write, in this order. @default every field, then every layer */
  fields?: readonly string[]
  /** Records per batch read, and per Parquet row group at most. @default 4096 */
  batchSize?: number
  /** Parquet only. @default 'snappy' */
  compression?: ParquetCompression
  /** Parquet only: key-value metadata of the file (the manifest is always there). */
  metadata?: Record<string, string>
  signal?: AbortSignal
}

export interface ExportStream {
  /** The fields written after `_anchor`. */
  fields: string[]
  schema: Schema
  /** The file's bytes. */
  stream: Readable
  /** Records written so far (all of them once `stream` has ended). */
  records(): number
}

/** Every field and layer of the dataset's state, by name. */
export function exportableFields(ds: Dataset): Map<string, Field> {
  return new Map([
    ...ds.manifest.schema.fields.map((f) => [f.name, f] as const),
    ...ds.manifest.layers.map((l) => [l.name, l.field] as const),
  ])
}

/**
 * The records of `ds` (its current state) as an Arrow IPC stream or a Parquet file. Field
 * names are checked before anything is read (UnknownFieldError). A dataset without records
 * gives a file with the schema and no rows.
 */
export async function exportRecords(ds: Dataset, options: ExportOptions): Promise<ExportStream> {
  const known = exportableFields(ds)
  for (const name of options.fields ?? []) {
    if (!known.has(name)) throw new UnknownFieldError(name, [...known.keys()])
  }
  const fields = options.fields !== undefined ? [...options.fields] : [...known.keys()]
  const schema = new Schema([
    new ArrowField('_anchor', new Uint64(), false),
    ...fields.map((name) => new ArrowField(name, arrowTypeOf(known.get(name)!), true)),
  ])
  const batchSize = options.batchSize ?? 4096
  let records = 0
  async function* batches(): AsyncGenerator<RecordBatch> {
    if (ds.manifest.stats.records === 0) return
    for await (const batch of ds.iterArrowBatches({
      fields,
      batchSize,
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
    })) {
      records += batch.numRows
      yield batch
    }
  }
  let stream: Readable
  if (options.format === 'parquet') {
    // Row groups of `batchSize` records (and at most 128 MiB), written as they fill.
    stream = await parquetStream(schema, batches(), {
      rowGroupRecords: batchSize,
      compression: options.compression ?? 'snappy',
      binaryColumns: fields.filter((name) => known.get(name)!.family === 'binary'),
      metadata: { ...options.metadata, 'dreamdb.manifest': ds.currentManifest() },
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
    })
  } else {
    const source = batches()
    const first = await source.next()
    if (first.done) {
      // No records: a stream with the schema and no batches.
      stream = Readable.from([tableToIPC(new Table(schema), 'stream')])
    } else {
      async function* all() {
        yield first.value as RecordBatch
        yield* source
      }
      // A failure while reading destroys the returned stream with that error, so whoever
      // consumes it sees the failure instead of a truncated file.
      stream = pipeline(Readable.from(all()), RecordBatchStreamWriter.throughNode(), () => {}) as Readable
    }
  }
  return { fields, schema, stream, records: () => records }
}
