/**
 * Arrow record batches to a Parquet file, streamed: parquet-wasm's writer (arrow-rs's
 * `AsyncArrowWriter` compiled to WebAssembly) pulls one batch at a time and emits each row
 * group's bytes as soon as it is closed, so memory holds about one row group, not the file.
 *
 * The Arrow schema travels in the file (`ARROW:schema`, as pyarrow writes it), so readers
 * get back the exact types: `_anchor` uint64, embeddings as fixed-size lists of float32,
 * categorical scalars as dictionaries, binary as binary.
 */
import { Readable } from 'node:stream'
import { type RecordBatch, type Schema, Table, tableToIPC } from 'apache-arrow'
import type * as ParquetWasm from 'parquet-wasm'
import { parquetWasm } from './shards.js'

export type ParquetCompression = 'snappy' | 'zstd' | 'gzip' | 'none'

export interface ParquetWriteOptions {
  /** Records per row group at most. @default 4096 */
  rowGroupRecords?: number
  /** Bytes per row group at most (before compression): image columns fill a group fast. @default 128 MiB */
  rowGroupBytes?: number
  /** @default 'snappy' */
  compression?: ParquetCompression
  /** Columns of opaque bytes (images): no dictionary, no min/max statistics. */
  binaryColumns?: readonly string[]
  /** Key-value metadata of the file (besides the Arrow schema). */
  metadata?: Record<string, string>
  signal?: AbortSignal
}

export const DEFAULT_ROW_GROUP_BYTES = 128 * 1024 * 1024

function compressionOf(pw: typeof ParquetWasm, c: ParquetCompression): ParquetWasm.Compression {
  switch (c) {
    case 'snappy':
      return pw.Compression.SNAPPY
    case 'zstd':
      return pw.Compression.ZSTD
    case 'gzip':
      return pw.Compression.GZIP
    case 'none':
      return pw.Compression.UNCOMPRESSED
  }
}

function properties(pw: typeof ParquetWasm, options: ParquetWriteOptions): ParquetWasm.WriterProperties {
  let builder = new pw.WriterPropertiesBuilder()
    .setMaxRowGroupSize(options.rowGroupRecords ?? 4096)
    .setMaxRowGroupBytes(options.rowGroupBytes ?? DEFAULT_ROW_GROUP_BYTES)
    .setCompression(compressionOf(pw, options.compression ?? 'snappy'))
    .setCreatedBy('dreamdb export (parquet-wasm)')
  for (const column of options.binaryColumns ?? []) {
    builder = builder
      .setColumnDictionaryEnabled(column, false)
      .setColumnStatisticsEnabled(column, pw.EnabledStatistics.None)
  }
  if (options.metadata !== undefined) {
    builder = builder.setKeyValueMetadata(new Map(Object.entries(options.metadata)))
  }
  return builder.build()
}

/**
 * The bytes of a Parquet file holding `batches` (all of `schema`), as a Node stream. The
 * batches are pulled one at a time, only when the writer wants more; with no batch at all
 * the file holds the schema and no rows.
 */
export async function parquetStream(
  schema: Schema,
  batches: AsyncIterable<RecordBatch>,
  options: ParquetWriteOptions = {},
): Promise<Readable> {
  const pw = await parquetWasm()
  const iterator = batches[Symbol.asyncIterator]()
  const first = await iterator.next()
  if (first.done) {
    const empty = pw.Table.fromIPCStream(tableToIPC(new Table(schema), 'stream'))
    return Readable.from([pw.writeParquet(empty, properties(pw, options))])
  }
  let pending: RecordBatch | undefined = first.value
  const source = new ReadableStream<ParquetWasm.RecordBatch>({
    async pull(controller) {
      try {
        options.signal?.throwIfAborted()
        let batch = pending
        pending = undefined
        if (batch === undefined) {
          const next = await iterator.next()
          if (next.done) {
            controller.close()
            return
          }
          batch = next.value
        }
        // One batch through IPC into WebAssembly memory (its dictionaries included).
        const table = pw.Table.fromIPCStream(tableToIPC(new Table([batch]), 'stream'))
        try {
          for (const b of table.recordBatches()) controller.enqueue(b)
        } finally {
          table.free()
        }
      } catch (error) {
        controller.error(error)
      }
    },
    async cancel() {
      await iterator.return?.()
    },
  })
  const bytes = await pw.transformParquetStream(source, properties(pw, options))
  return Readable.fromWeb(bytes as import('node:stream/web').ReadableStream<Uint8Array>)
}
