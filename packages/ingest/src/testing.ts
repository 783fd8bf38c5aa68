/**
 * Parquet shards in the Hugging Face layout, written from Arrow columns: the one shard
 * writer that ingest's tests, the torture suite and the ingest benchmark share
 * (`@dreamdb/ingest/testing`). Callers bring the rows (real digits, unique bytes, random
 * JPEG-sized payloads); this module knows the layout `datasets` writes and the Hub serves:
 * `<split>-00000-of-00017.parquet` under `data/`, an `image` struct `{bytes, path}` (the
 * Image feature), a ClassLabel's names in the `huggingface` schema metadata.
 *
 * @example
 * ```ts
 * import { imageColumn, shardFileName, writeHfShard } from '@dreamdb/ingest/testing'
 * import { Int64, vectorFromArray } from 'apache-arrow'
 *
 * await writeHfShard(`${root}/data/${shardFileName('train', 0, 1)}`, {
 *   image: imageColumn([png0, png1], ['0.png', '1.png']),
 *   label: vectorFromArray([0n, 1n], new Int64()),
 * }, { labelNames: ['cat', 'dog'] })
 * ```
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import {
  Binary,
  Field,
  makeData,
  makeVector,
  RecordBatch,
  Schema,
  Struct,
  Table,
  tableToIPC,
  Utf8,
  type Vector,
  vectorFromArray,
} from 'apache-arrow'
import { parquetWasm } from './shards.js'

/** `train-00003-of-00017.parquet`: shard `index` of `count` of a split. */
export function shardFileName(split: string, index: number, count: number): string {
  return `${split}-${String(index).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.parquet`
}

/** The Image feature's column: a struct `{bytes: binary, path: string}` per row. */
export function imageColumn(
  bytes: readonly (Uint8Array | null)[],
  paths: readonly (string | null)[],
): Vector<Struct> {
  const type = new Struct([new Field('bytes', new Binary(), true), new Field('path', new Utf8(), true)])
  return makeVector(
    makeData({
      type,
      length: bytes.length,
      nullCount: 0,
      children: [
        vectorFromArray(bytes as (Uint8Array | null)[], new Binary()).data[0]!,
        vectorFromArray(paths as (string | null)[], new Utf8()).data[0]!,
      ],
    }),
  )
}

export interface HfShardOptions {
  /** The ClassLabel names of an int `label` column, written to the `huggingface` metadata; `null`: a string label. */
  labelNames?: readonly string[] | null
  /** Rows per row group. @default 16 */
  rowGroup?: number
  /** @default 'snappy' */
  compression?: 'snappy' | 'none'
}

/**
 * Write one shard: `columns` in order, with the `huggingface` schema metadata that
 * `datasets` writes (the Image feature, and the ClassLabel names when given). Creates the
 * folder.
 */
export async function writeHfShard(
  path: string,
  columns: Record<string, Vector>,
  options: HfShardOptions = {},
): Promise<void> {
  const pw = await parquetWasm()
  const plain = new Table(columns)
  const features: Record<string, unknown> = {}
  if ('image' in columns) features.image = { _type: 'Image' }
  if ('label' in columns) {
    features.label =
      options.labelNames === null || options.labelNames === undefined
        ? { dtype: 'string', _type: 'Value' }
        : { names: [...options.labelNames], _type: 'ClassLabel' }
  }
  const schema = new Schema(
    plain.schema.fields,
    new Map([['huggingface', JSON.stringify({ info: { features } })]]),
  )
  const table = new Table(
    schema,
    plain.batches.map((b) => new RecordBatch(schema, b.data)),
  )
  const properties = new pw.WriterPropertiesBuilder()
    .setMaxRowGroupSize(options.rowGroup ?? 16)
    .setCompression(options.compression === 'none' ? pw.Compression.UNCOMPRESSED : pw.Compression.SNAPPY)
    .build()
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, pw.writeParquet(pw.Table.fromIPCStream(tableToIPC(table, 'stream')), properties))
}
