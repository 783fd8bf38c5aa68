/**
 * Hugging Face-style parquet shards: finding them for each split, checking their columns
 * before anything is written, and reading a range of rows as an Arrow table.
 *
 * The layout is the one `datasets` writes and the Hub serves (ImageNet-100 among them):
 * `<root>[/data]/<split>-00000-of-00017.parquet` (or `<root>[/data]/<split>/*.parquet`),
 * an `image` struct column `{bytes, path}` (the Image feature), a `label` column (a
 * ClassLabel's int index, whose names are in the `huggingface` schema metadata, or a
 * string) and, optionally, an embedding column (a list of floats).
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { open, readdir, stat } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join, relative, sep } from 'node:path'
import { DataType, type Field, type Schema, type Table, tableFromIPC } from 'apache-arrow'
import type * as ParquetWasm from 'parquet-wasm'
import { decodeOnThread, footerOnThread, type RowDigests, type TransferBuffers } from './decode-threads.js'
import { EmbeddingColumnError, IngestFileNotFoundError, NoShardsError, ShardError } from './errors.js'

/** One parquet file of one split. */
export interface ShardFile {
  split: string
  /** Absolute path. */
  path: string
  /** The path relative to the root, with `/` separators: the shard's name in commit messages. */
  name: string
}

let parquet: Promise<typeof ParquetWasm> | undefined
/**
 * parquet-wasm, loaded (and its WebAssembly compiled) only by the verbs that read parquet.
 * Its Node build is CommonJS: required, not imported, which costs half the CPU (as in
 * decode-worker.js).
 */
export function parquetWasm(): Promise<typeof ParquetWasm> {
  parquet ??= Promise.resolve().then(
    () => createRequire(import.meta.url)('parquet-wasm') as typeof ParquetWasm,
  )
  return parquet
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
const NUMBERED = /-(\d+)-of-(\d+)\.parquet$/

/**
 * The shards of each split, in name order: `<split>-*.parquet` and `<split>/*.parquet` in
 * `root` and `root/data`. A split without shards, or with numbered shards missing
 * (`-00003-of-00017` absent), is an error naming what was expected.
 */
export async function findShards(root: string, splits: readonly string[]): Promise<ShardFile[]> {
  const info = await stat(root).catch(() => undefined)
  if (info === undefined) throw new IngestFileNotFoundError(root, 'Dataset root')
  if (!info.isDirectory()) {
    throw new IngestFileNotFoundError(root, 'Dataset root (a folder of parquet shards)')
  }
  const folders = [root, join(root, 'data')].filter((dir) => existsSync(dir))
  const list = async (dir: string) =>
    (await readdir(dir, { withFileTypes: true }).catch(() => [])).filter(
      (e) => e.isFile() && e.name.endsWith('.parquet'),
    )
  const shards: ShardFile[] = []
  const found: string[] = []
  for (const split of splits) {
    const pattern = new RegExp(`^${escapeRegExp(split)}(-.*)?\\.parquet$`)
    const paths: string[] = []
    for (const dir of folders) {
      for (const entry of await list(dir)) if (pattern.test(entry.name)) paths.push(join(dir, entry.name))
      for (const entry of await list(join(dir, split))) paths.push(join(dir, split, entry.name))
    }
    paths.sort()
    if (paths.length === 0) {
      for (const dir of folders) {
        for (const entry of await list(dir)) found.push(entry.name.replace(/(-\d+-of-\d+)?\.parquet$/, ''))
      }
      const others = [...new Set(found)].filter((s) => !splits.includes(s))
      throw new NoShardsError(
        `No parquet shards for split '${split}' under ${root} (looked for ${split}-*.parquet and ${split}/*.parquet in it and in data/)`,
        others.length > 0
          ? `the shards there are for ${others.map((s) => `'${s}'`).join(', ')}; ingest those splits (--splits)`
          : 'point the root (--root) at the folder that holds the dataset (or its data/ folder)',
      )
    }
    checkNumbering(split, paths)
    for (const path of paths) shards.push({ split, path, name: relative(root, path).split(sep).join('/') })
  }
  return shards
}

/** `train-00000-of-00003.parquet` ... `train-00002-of-00003.parquet`: all there, one total. */
function checkNumbering(split: string, paths: string[]): void {
  const numbered = paths.map((p) => NUMBERED.exec(p)).filter((m) => m !== null)
  if (numbered.length === 0) return
  const totals = new Set(numbered.map((m) => Number(m[2])))
  const total = Math.max(...totals)
  const have = new Set(numbered.map((m) => Number(m[1])))
  const missing: string[] = []
  for (let i = 0; i < total; i++) {
    if (!have.has(i))
      missing.push(`${split}-${String(i).padStart(5, '0')}-of-${String(total).padStart(5, '0')}`)
  }
  if (missing.length > 0 || totals.size > 1) {
    throw new NoShardsError(
      `Split '${split}' is incomplete: ${missing.length} of ${total} shards missing (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', …' : ''}.parquet)${totals.size > 1 ? `, and the shards disagree on the total (${[...totals].join(', ')})` : ''}`,
      'finish the download (an ingest of part of a split would pass for the whole of it), or ingest another split',
    )
  }
}

/** What ingest reads from a shard's columns. */
export interface ShardLayout {
  image: 'struct' | 'binary'
  /** The ClassLabel names when `label` is an int index with names in the metadata. */
  labelNames: string[] | null
  labelType: 'int' | 'string'
  /** Dimension when the embedding column is a fixed-size list; null when it varies per row. */
  embeddingDim: number | null
  /** Whether the image struct has a `path` (the file name the image came from). */
  imagePath: boolean
  /**
   * Every other column, in the shard's order, with the scalar kind it is kept as, or `null`
   * (with the Arrow type) when no scalar field can hold it (a list, a struct, bytes).
   */
  others: SourceColumn[]
}

/** A column of a shard besides the image, the label and the embedding column. */
export interface SourceColumn {
  name: string
  /** The Arrow type, as text (`Utf8`, `Int64`, `List<Utf8>`). */
  type: string
  kind: 'string' | 'categorical' | 'int' | 'float' | 'bool' | 'timestamp' | null
  /** Why it is not kept, when `kind` is null. */
  reason?: 'no scalar field holds its type' | 'its name cannot be a field name'
}

/** A field name (`@dreamdb/manifest`'s rule): a letter, then letters, digits, `_`, `.`, `-`. */
const FIELD_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/

/** How a column other than image, label and embedding is kept, or why not. */
function sourceColumn(field: Field): SourceColumn {
  const type = String(field.type)
  // `_anchor` (a DreamDB export read back), `__index_level_0__` (pandas): not field names.
  if (!FIELD_NAME.test(field.name)) {
    return { name: field.name, type, kind: null, reason: 'its name cannot be a field name' }
  }
  const kind = scalarKindOf(field.type as DataType)
  return kind === null
    ? { name: field.name, type, kind, reason: 'no scalar field holds its type' }
    : { name: field.name, type, kind }
}

/** The scalar field kind that holds a column of this Arrow type, or null. */
function scalarKindOf(type: DataType): SourceColumn['kind'] {
  if (DataType.isInt(type)) return 'int'
  if (DataType.isFloat(type)) return 'float'
  if (DataType.isBool(type)) return 'bool'
  if (isStringType(type)) return 'string'
  if (DataType.isDictionary(type) && isStringType((type as { dictionary: DataType }).dictionary)) {
    return 'categorical'
  }
  // apache-arrow reads every timestamp unit as ms since the epoch.
  if (DataType.isTimestamp(type)) return 'timestamp'
  return null
}

/** An opened shard: row count, row groups, schema, and a fingerprint of its content. */
export interface OpenShard extends ShardFile {
  rows: number
  /** Rows in each row group, in order. */
  rowGroups: number[]
  schema: Schema
  /** sha-256 of the file's size and its last 64 KiB (the footer): a cheap identity. */
  fingerprint: string
  bytes: number
  layout: ShardLayout
}

/** Open a shard and check its columns against what ingest needs. Reads the footer only. */
export async function openShard(shard: ShardFile, embeddingColumn: string | undefined): Promise<OpenShard> {
  let schema: Schema
  let rows: number
  let rowGroups: number[]
  try {
    const footer = await footerOnThread(shard.path)
    rows = footer.rows
    rowGroups = footer.rowGroups
    schema = tableFromIPC(footer.schema).schema
  } catch (error) {
    throw new ShardError(
      shard.name,
      `is not a readable parquet file (${errorText(error)})`,
      'check the download; a complete shard ends with the 4 bytes PAR1',
      { cause: error },
    )
  }
  const layout = checkColumns(shard.name, schema, embeddingColumn)
  const { bytes, fingerprint } = await fingerprintOf(shard.path)
  return { ...shard, rows, rowGroups, schema, fingerprint, bytes, layout }
}

function errorText(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error)
  return text.replace(/\s+/g, ' ').trim().slice(0, 200)
}

const LAYOUT_HINT =
  'ingest reads the Hugging Face layout: an image column {bytes, path}, a label column, and the embeddings in a column (--embedding-column) or computed by a model (--model)'

function checkColumns(file: string, schema: Schema, embeddingColumn: string | undefined): ShardLayout {
  const names = schema.fields.map((f) => f.name)
  const column = (name: string): Field => {
    const field = schema.fields.find((f) => f.name === name)
    if (field === undefined) {
      throw new ShardError(file, `has no column '${name}'; its columns are ${names.join(', ')}`, LAYOUT_HINT)
    }
    return field
  }
  const image = column('image')
  let imageKind: ShardLayout['image']
  if (DataType.isStruct(image.type)) {
    const bytes = image.type.children.find((c) => c.name === 'bytes')
    if (bytes === undefined || !isBinaryType(bytes.type)) {
      throw new ShardError(
        file,
        `column 'image' is ${image.type}, expected a struct with binary 'bytes' (the Hugging Face Image feature)`,
        LAYOUT_HINT,
      )
    }
    imageKind = 'struct'
  } else if (isBinaryType(image.type)) {
    imageKind = 'binary'
  } else {
    throw new ShardError(
      file,
      `column 'image' is ${image.type}, expected a struct {bytes, path} or binary`,
      LAYOUT_HINT,
    )
  }
  const label = column('label')
  const labelType = DataType.isInt(label.type)
    ? 'int'
    : isStringType(label.type) ||
        (DataType.isDictionary(label.type) &&
          isStringType((label.type as { dictionary: DataType }).dictionary))
      ? 'string'
      : undefined
  if (labelType === undefined) {
    throw new ShardError(
      file,
      `column 'label' is ${label.type}, expected an integer class index or a string`,
      LAYOUT_HINT,
    )
  }
  let embeddingDim: number | null = null
  if (embeddingColumn !== undefined) {
    const field = schema.fields.find((f) => f.name === embeddingColumn)
    if (field === undefined) {
      throw new EmbeddingColumnError(
        file,
        `has no column '${embeddingColumn}'; its columns are ${names.join(', ')}`,
        'name the column that holds the vectors (--embedding-column), or compute them with a model (--model)',
      )
    }
    const type = field.type as DataType
    const isListType = DataType.isList(type) || DataType.isFixedSizeList(type) || type.typeId === 21
    const child = isListType ? (type.children[0]?.type as DataType | undefined) : undefined
    if (!isListType || child === undefined || !DataType.isFloat(child)) {
      throw new EmbeddingColumnError(
        file,
        `column '${embeddingColumn}' is ${type}, expected a list of floats (one vector per row)`,
        'an embedding column is list<float32>, list<float64> or fixed_size_list<float32>[dim]',
      )
    }
    if (DataType.isFixedSizeList(type)) embeddingDim = type.listSize
  }
  const imagePath =
    DataType.isStruct(image.type) &&
    image.type.children.some((c) => c.name === 'path' && isStringType(c.type as DataType))
  const others = schema.fields
    .filter((f) => f.name !== 'image' && f.name !== 'label' && f.name !== embeddingColumn)
    .map(sourceColumn)
  return {
    image: imageKind,
    labelNames: labelType === 'int' ? classLabelNames(schema) : null,
    labelType,
    embeddingDim,
    imagePath,
    others,
  }
}

function isBinaryType(type: DataType): boolean {
  return DataType.isBinary(type) || DataType.isLargeBinary(type)
}

function isStringType(type: DataType): boolean {
  return DataType.isUtf8(type) || DataType.isLargeUtf8(type)
}

/** The names of a ClassLabel `label`, from the `huggingface` schema metadata `datasets` writes. */
function classLabelNames(schema: Schema): string[] | null {
  const raw = schema.metadata.get('huggingface')
  if (raw === undefined) return null
  try {
    const meta = JSON.parse(raw) as {
      info?: { features?: Record<string, { names?: unknown }> }
      features?: Record<string, { names?: unknown }>
    }
    const names = (meta.info?.features ?? meta.features)?.label?.names
    return Array.isArray(names) && names.every((n) => typeof n === 'string') ? names : null
  } catch {
    return null
  }
}

async function fingerprintOf(path: string): Promise<{ bytes: number; fingerprint: string }> {
  const handle = await open(path, 'r')
  try {
    const { size } = await handle.stat()
    const length = Math.min(size, 64 << 10)
    const tail = Buffer.alloc(length)
    await handle.read(tail, 0, length, size - length)
    const hash = createHash('sha256').update(String(size)).update(tail)
    return { bytes: size, fingerprint: hash.digest('hex').slice(0, 16) }
  } finally {
    await handle.close()
  }
}

/**
 * Rows `[start, end)` of a shard, only the named columns, decoded on the decode thread
 * (decode-threads.ts), beside the caller's work. Only the row groups that hold those rows are
 * read. With `buffers`, the table's bytes are in one of its shared buffers: the caller gives
 * it back (`buffers.giveBack(table)`) once nothing reads the table's values.
 */
export async function readRows(
  shard: OpenShard,
  start: number,
  end: number,
  columns: string[],
  options: { whole?: boolean; buffers?: TransferBuffers } = {},
): Promise<Table> {
  return (await readRowsHashed(shard, start, end, columns, options)).table
}

/**
 * `readRows`, and with `hash` (a binary column's path, `DecodeRequest.hash`) each row's
 * digest of its value where the decode thread took them (a file read whole into shared
 * buffers); undefined elsewhere.
 */
export async function readRowsHashed(
  shard: OpenShard,
  start: number,
  end: number,
  columns: string[],
  options: { whole?: boolean; buffers?: TransferBuffers; hash?: string[] } = {},
): Promise<{ table: Table; digests?: RowDigests | undefined }> {
  const groups: number[] = []
  let first = -1
  let at = 0
  for (const [i, count] of shard.rowGroups.entries()) {
    if (at < end && at + count > start) {
      if (first < 0) first = at
      groups.push(i)
    }
    at += count
  }
  const request = {
    rowGroups: groups,
    offset: start - Math.max(first, 0),
    limit: end - start,
    columns,
    ...(options.whole === true ? { whole: true } : {}),
    ...(options.buffers !== undefined ? { into: options.buffers.take() } : {}),
    ...(options.hash !== undefined ? { hash: options.hash } : {}),
  }
  try {
    const { table, bytes, digests } = await decodeOnThread({ path: shard.path, ...request })
    options.buffers?.lend(table, bytes)
    return { table, digests }
  } catch (error) {
    throw new ShardError(
      shard.name,
      `rows ${start}-${end} cannot be read (${errorText(error)})`,
      'check the download; the file may be truncated or damaged',
      { cause: error },
    )
  }
}
