/**
 * Ingest Hugging Face-style parquet shards into a dataset: resumable, bounded-parallel,
 * and all-or-nothing per commit.
 *
 * Each commit appends one *chunk* (a range of rows of one shard) and records it as
 * structured commit metadata (`meta.ingest`: split, shard, rows, fingerprint, the row
 * range, its first anchor and the plan's), with a message for people
 * (`ingest <split> <shard> rows <start>-<end> of <rows> [<fingerprint>]`). Both are part of
 * the manifest the commit creates, so a chunk's records and the record that they were
 * ingested land together or not at all. A re-run reads the branch's history, skips the rows
 * that are already committed, and appends only the rest: interrupted at any point (Ctrl-C,
 * SIGKILL, a lost connection) and run again, it finishes the job without duplicating a
 * record. Datasets ingested before the metadata existed resume from the message alone.
 *
 * Records follow the source: chunks commit in (shard, row) order while reading and
 * embedding run ahead, so records iterate in that order and an interrupted run leaves a
 * prefix of the plan; and the plan (every shard in order, its rows) gets one range of
 * anchors, shard by shard and row by row, recorded in the metadata, so a re-run gives the
 * rows it appends the anchors the first run would have, whichever chunk's upload finished
 * first.
 *
 * Every source column is kept: other scalar columns (`id`, `caption`, …) become scalar
 * fields, the image's `path` becomes `image_path`, and each record says where it came from
 * (`source_shard`, `source_row`). Columns no scalar field can hold are reported in the
 * result. `columns: 'core'` keeps only image, embedding, label and split.
 *
 * Everything that can be checked before writing is checked first: the shards' columns and
 * types, the embedding column's dimension on every pending row (it reads that column alone),
 * the model, and the schema of an existing dataset. No printing, no exit codes: progress
 * goes to a callback.
 */
import { createHash } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import { parseCid } from '@dreamdb/cas'
import { Dataset, type DatasetRecord, ReadOnlyDatasetError } from '@dreamdb/dataset'
import type {
  CommitMeta,
  CommitOptions,
  Field,
  FieldInput,
  Manifest,
  MetaValue,
  Repository,
} from '@dreamdb/manifest'
import { assertUserRefName, log } from '@dreamdb/manifest'
import { type Data, DataType, type Table, type Vector } from 'apache-arrow'
import pRetry from 'p-retry'
import { type RowDigests, TransferBuffers } from './decode-threads.js'
import {
  EmbeddingColumnError,
  IngestHistoryError,
  IngestLockedError,
  SchemaMismatchError,
  ShardChangedError,
  ShardError,
} from './errors.js'
import {
  DEFAULT_LEASE_TTL_MS,
  holderToken,
  type IngestLease,
  type LeaseHolder,
  liveLease,
  takeShardClaim,
} from './lease.js'
import { type Embedder, loadModel, type ModelOptions } from './model.js'
import {
  findShards,
  type OpenShard,
  openShard,
  readRows,
  readRowsHashed,
  type SourceColumn,
} from './shards.js'

export type { SourceColumn } from './shards.js'

export type EmbeddingSource = { kind: 'column'; column: string } | ({ kind: 'model' } & ModelOptions)

/**
 * Which source columns become fields. `all`: every column a scalar field can hold, the
 * image's path and each record's source shard and row; `core`: image, embedding, label and
 * split only (the fields of datasets ingested before every column was kept).
 */
export type ColumnMode = 'all' | 'core'

export interface IngestOptions {
  /** The folder of shards (`<root>[/data]/<split>-00000-of-00017.parquet`). */
  root: string
  dataset: string
  splits: string[]
  embedding: EmbeddingSource
  /** Train and apply IVF + RaBitQ on the embedding field after the append. */
  index?: { algorithm: string; bits: number } | undefined
  /**
   * @default 'all'. An existing dataset decides: one with only the core fields resumes as
   * `core`; asking for `core` into a dataset with every column is a SchemaMismatchError.
   */
  columns?: ColumnMode
  /** Rows per commit. @default 1024 */
  batchRecords?: number
  /**
   * Chunks read and embedded ahead, and chunks whose objects are being written: the next
   * chunk's objects are encoded, hashed and written while the one before commits (commits
   * still land one at a time, in source order with `order: 'source'`). @default 2
   */
  concurrency?: number
  /**
   * `source` (default): chunks commit in source order (shard, row), so records iterate in
   * that order, also after an interrupted run; reading and embedding run `concurrency`
   * chunks ahead. `landing`: each chunk commits as soon as it is ready (uploads overlap);
   * records iterate in the order their commits landed (their anchors still follow the source).
   */
  order?: 'source' | 'landing'
  /** For relative model paths. */
  cwd: string
  /**
   * Shard claims (design/0006): `ttlMs` how long a claim outlives its last renewal (@default
   * 60 s), `renewMs` how often it is renewed (@default ttl / 4), `pollMs` how often an ingest
   * whose shards left are all held by others looks again (@default min(250 ms, ttl / 8)).
   * `waitMs`: how long to wait while an older DreamDB's ingest holds the dataset's lease (0:
   * fail at once with `ERR_INGEST_LOCKED`).
   */
  lease?: { waitMs?: number; ttlMs?: number; renewMs?: number; pollMs?: number; command?: string }
  signal?: AbortSignal
  onProgress?: (event: IngestEvent) => void
}

export type IngestEvent =
  | {
      kind: 'planned'
      /** Records this run will append, and records of these shards already in the dataset. */
      total: number
      skipped: number
      shards: number
      chunks: number
      /** Source columns no field can hold (lists, structs, bytes): not ingested. */
      skippedColumns: SourceColumn[]
    }
  | {
      kind: 'chunk'
      split: string
      shard: string
      start: number
      end: number
      records: number
      bytes: number
    }
  | { kind: 'indexing'; algorithm: string; bits: number }
  /** A ref is locked (a writer killed mid-commit leaves its lock): waiting for it to go stale. */
  | { kind: 'waiting'; message: string }
  /** An ingest from before shard claims holds the dataset's lease (design/0006); waiting for it. */
  | { kind: 'lease-wait'; holder: LeaseHolder }
  /** The claim (or lease) of an ingest that is gone (dead on this host, or expired) was taken over. */
  | { kind: 'lease-taken-over'; holder: LeaseHolder; why: 'expired' | 'dead' }
  /**
   * Every shard left is being written by other ingests (their claims): this one waits for
   * them to finish, or takes a shard over when its holder dies. Sent when the list changes.
   */
  | { kind: 'claims-wait'; shards: { shard: string; holder: LeaseHolder }[] }
  /** Records of these shards that other ingests committed, seen while waiting for them. */
  | { kind: 'others'; records: number }

export interface SplitSummary {
  shards: number
  /** Rows in the shards. */
  records: number
  /** Appended by this run. */
  ingested: number
  /** Already in the dataset from an earlier run. */
  skipped: number
}

export interface IngestResult {
  dataset: string
  backend: string
  manifest: string
  created: boolean
  embedding:
    | { source: 'column'; column: string; dim: number }
    | { source: 'model'; model: string; output: string; dim: number }
  /** The fields written, and the source columns kept as fields or left out. */
  columns: { mode: ColumnMode; fields: string[]; kept: string[]; skipped: SourceColumn[] }
  splits: Record<string, SplitSummary>
  records: { ingested: number; skipped: number; total: number }
  /** Image bytes appended by this run. */
  bytes: number
  commits: number
  index: { algorithm: string; bits: number; trained: boolean } | null
  seconds: number
}

/** The fields every ingest writes (`columns: 'core'`). */
export function coreSchema(dim: number): FieldInput[] {
  return [
    { name: 'image', family: 'binary', media: 'image' },
    { name: 'embedding', family: 'embedding', dim, metric: 'cosine' },
    { name: 'label', family: 'scalar', kind: 'categorical' },
    { name: 'split', family: 'scalar', kind: 'categorical' },
  ]
}

/** Fields ingest names itself; a source column under one of these names is refused. */
const OWN_FIELDS = ['image', 'embedding', 'label', 'split', 'image_path', 'source_shard', 'source_row']
const CORE_HINT =
  "keep only image, embedding, label and split with columns: 'core' (dreamdb ingest --columns core)"

/** The fields of `columns: 'all'` for shards of this layout. */
export function fullSchema(dim: number, shard: OpenShard): FieldInput[] {
  const fields: FieldInput[] = [...coreSchema(dim)]
  if (shard.layout.imagePath) fields.push({ name: 'image_path', family: 'scalar', kind: 'string' })
  fields.push({ name: 'source_shard', family: 'scalar', kind: 'categorical' })
  fields.push({ name: 'source_row', family: 'scalar', kind: 'int' })
  for (const column of shard.layout.others) {
    if (column.kind === null) continue
    if (OWN_FIELDS.includes(column.name)) {
      throw new ShardError(
        shard.name,
        `column '${column.name}' has the name of a field ingest writes itself (${OWN_FIELDS.join(', ')})`,
        CORE_HINT,
      )
    }
    fields.push({ name: column.name, family: 'scalar', kind: column.kind })
  }
  return fields
}

/** What a shard's other columns look like, to compare shards. */
const columnsKey = (shard: OpenShard) =>
  JSON.stringify([shard.layout.imagePath, shard.layout.others.map((c) => [c.name, c.kind])])

/** A chunk read and embedded: its records, image bytes, and the table they are views of. */
interface Prepared {
  records: DatasetRecord[]
  size: number
  table: Table
  /** Each image's sha2-256, taken on the decode thread (32 bytes a record), when it took them. */
  digests: Uint8Array | undefined
}

/** One commit's worth of rows. */
interface Chunk {
  shard: OpenShard
  start: number
  end: number
}

/** The message of a chunk's commit (for people; resume reads the metadata). */
const MESSAGE = /^ingest (\S+) (\S+) rows (\d+)-(\d+) of (\d+) \[([0-9a-f]+)\]$/
/** `meta.ingest.format` of a chunk's commit. */
export const CHUNK_META_FORMAT = 'dreamdb.ingest-chunk/1'

export function chunkMessage(c: Chunk): string {
  return `ingest ${c.shard.split} ${encodeURI(c.shard.name)} rows ${c.start}-${c.end} of ${c.shard.rows} [${c.shard.fingerprint}]`
}

function chunkMeta(
  c: Chunk,
  anchor: bigint,
  plan: { digest: string; anchor: bigint },
  run: string,
): CommitMeta {
  return {
    ingest: {
      format: CHUNK_META_FORMAT,
      // The ingest that wrote it (its claims' token): its own commits are no other's rows.
      run,
      split: c.shard.split,
      shard: c.shard.name,
      rows: c.shard.rows,
      fingerprint: c.shard.fingerprint,
      start: c.start,
      end: c.end,
      // uint64 anchors as decimal text: meta numbers are safe integers.
      anchor: anchor.toString(),
      plan: { digest: plan.digest, anchor: plan.anchor.toString() },
    },
  }
}

/** The plan's identity: the shards, in order, each with its split, rows and fingerprint. */
function planDigest(shards: readonly OpenShard[]): string {
  const list = shards.map((s) => [s.split, s.name, s.rows, s.fingerprint])
  return createHash('sha256').update(JSON.stringify(list)).digest('hex').slice(0, 16)
}

/** What the history says about one shard. */
export interface CommittedShard {
  split: string
  rows: number
  fingerprint: string
  /** Row ranges `[start, end)` already in the dataset. */
  ranges: [number, number][]
  /** The anchor of the shard's row 0, when its commits recorded anchors (not in message-only history). */
  anchor: bigint | undefined
}

/** Rows of each shard already committed, from the branch's history. */
export interface Committed {
  /** By shard name (relative to the root, `/`-separated). */
  ranges: Map<string, CommittedShard>
  /** The first anchor of each plan the history names, by plan digest. */
  plans: Map<string, bigint>
}

const isMap = (v: MetaValue | undefined): v is { [key: string]: MetaValue } =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

/** One chunk from a commit: its metadata, or (older datasets) its message; undefined when it is none. */
function chunkOf(entry: { manifest: string; message: string; meta?: CommitMeta }):
  | {
      split: string
      shard: string
      rows: number
      fingerprint: string
      start: number
      end: number
      anchor?: bigint
      plan?: { digest: string; anchor: bigint }
    }
  | undefined {
  const meta = entry.meta?.ingest
  if (isMap(meta) && meta.format === CHUNK_META_FORMAT) {
    const bad = (what: string): never => {
      throw new IngestHistoryError(
        `Commit ${entry.manifest} says it is an ingest chunk, but its meta.ingest.${what} is malformed`,
        'the history was written by something else than ingest; ingest into a new dataset name',
      )
    }
    const text = (key: string) => (typeof meta[key] === 'string' ? (meta[key] as string) : bad(key))
    const count = (key: string) =>
      typeof meta[key] === 'number' && Number.isSafeInteger(meta[key]) && (meta[key] as number) >= 0
        ? (meta[key] as number)
        : bad(key)
    const anchor = (value: MetaValue | undefined, key: string) =>
      typeof value === 'string' && /^[0-9]{1,20}$/.test(value) ? BigInt(value) : bad(key)
    const plan = meta.plan
    if (!isMap(plan)) bad('plan')
    const chunk = {
      split: text('split'),
      shard: text('shard'),
      rows: count('rows'),
      fingerprint: text('fingerprint'),
      start: count('start'),
      end: count('end'),
      anchor: anchor(meta.anchor, 'anchor'),
      plan: {
        digest:
          typeof (plan as Record<string, MetaValue>).digest === 'string'
            ? ((plan as Record<string, MetaValue>).digest as string)
            : bad('plan.digest'),
        anchor: anchor((plan as Record<string, MetaValue>).anchor, 'plan.anchor'),
      },
    }
    if (chunk.start >= chunk.end || chunk.end > chunk.rows) bad('start')
    return chunk
  }
  const m = MESSAGE.exec(entry.message)
  if (m === null) return undefined
  return {
    split: m[1]!,
    shard: decodeURI(m[2]!),
    rows: Number(m[5]),
    fingerprint: m[6]!,
    start: Number(m[3]),
    end: Number(m[4]),
  }
}

type ChunkRecord = NonNullable<ReturnType<typeof chunkOf>>

/** Add one chunk commit to what is known (commits met newest first: the first plan anchor met wins). */
function addChunk({ ranges, plans }: Committed, chunk: ChunkRecord): void {
  const known = ranges.get(chunk.shard) ?? {
    split: chunk.split,
    rows: chunk.rows,
    fingerprint: chunk.fingerprint,
    ranges: [],
    anchor: undefined,
  }
  known.ranges.push([chunk.start, chunk.end])
  if (chunk.anchor !== undefined) known.anchor ??= chunk.anchor - BigInt(chunk.start)
  ranges.set(chunk.shard, known)
  if (chunk.plan !== undefined && !plans.has(chunk.plan.digest))
    plans.set(chunk.plan.digest, chunk.plan.anchor)
}

/**
 * What the history of `ref` says is already ingested: each chunk commit's metadata, or, for
 * commits made before ingest wrote metadata, its message.
 */
export async function committedChunks(
  repo: Repository,
  ref: string,
  options: { signal?: AbortSignal } = {},
): Promise<Committed> {
  const ranges: Committed['ranges'] = new Map()
  const plans: Committed['plans'] = new Map()
  const committed: Committed = { ranges, plans }
  for (const entry of await log(repo, ref, options)) {
    if (entry.change.kind !== 'append') continue
    const chunk = chunkOf(entry)
    if (chunk !== undefined) addChunk(committed, chunk)
  }
  return { ranges, plans }
}

/** `[0, rows)` less the committed ranges, cut into chunks of at most `size` rows. */
function pendingChunks(shard: OpenShard, done: [number, number][], size: number): Chunk[] {
  const sorted = [...done].sort((a, b) => a[0] - b[0])
  const chunks: Chunk[] = []
  let at = 0
  const gap = (from: number, to: number) => {
    for (let s = from; s < to; s += size) chunks.push({ shard, start: s, end: Math.min(s + size, to) })
  }
  for (const [start, end] of sorted) {
    if (start > at) gap(at, start)
    at = Math.max(at, end)
  }
  gap(at, shard.rows)
  return chunks
}

function describeField(f: Field | FieldInput): string {
  if (f.family === 'embedding') return `${f.name} (embedding dim ${f.dim})`
  if (f.family === 'scalar') return `${f.name} (${f.kind})`
  return `${f.name} (${f.family})`
}

/** Whether `existing` has exactly the `wanted` fields, with the same types (in any order). */
function sameFields(existing: readonly Field[], wanted: readonly FieldInput[]): boolean {
  return (
    existing.length === wanted.length &&
    wanted.every((w) => {
      const f = existing.find((e) => e.name === w.name)
      if (f === undefined || f.family !== w.family) return false
      if (w.family === 'embedding') return f.family === 'embedding' && f.dim === w.dim
      if (w.family === 'scalar') return f.family === 'scalar' && f.kind === w.kind
      return true
    })
  )
}

/** A list column's rows as ranges of one float array: `values[starts[i] .. starts[i] + lengths[i]]`. */
interface FlatLists {
  values: Float32Array | Float64Array
  starts: Int32Array | number[]
  lengths: Int32Array | number[]
}

/**
 * The rows of one chunk of a list<float> or fixed_size_list<float> column as views of its
 * values, or undefined for a shape this does not know (then the caller reads row by row).
 * Nulls come back as length -1.
 */
function flatLists(data: Data): FlatLists | undefined {
  const child = data.children[0]
  const type = data.type as DataType
  if (
    child === undefined ||
    !(child.values instanceof Float32Array || child.values instanceof Float64Array)
  ) {
    return undefined
  }
  const n = data.length
  const starts = new Int32Array(n)
  const lengths = new Int32Array(n)
  const valid = (i: number) => {
    if (data.nullCount === 0 || data.nullBitmap === undefined || data.nullBitmap.byteLength === 0) return true
    const bit = data.offset + i
    return ((data.nullBitmap[bit >> 3]! >> (bit & 7)) & 1) === 1
  }
  if (DataType.isFixedSizeList(type)) {
    const size = type.listSize
    for (let i = 0; i < n; i++) {
      starts[i] = child.offset + (data.offset + i) * size
      lengths[i] = valid(i) ? size : -1
    }
  } else if (DataType.isList(type) && data.valueOffsets instanceof Int32Array) {
    const offsets = data.valueOffsets
    for (let i = 0; i < n; i++) {
      const at = offsets[data.offset + i]!
      starts[i] = child.offset + at
      lengths[i] = valid(i) ? offsets[data.offset + i + 1]! - at : -1
    }
  } else {
    return undefined
  }
  return { values: child.values, starts, lengths }
}

/**
 * The embedding of each row as a Float32Array of `dim`, checked: not null, `dim` long, every
 * component finite. float32 rows are views of the column's buffer (no copy, no object per
 * row from Arrow); other shapes are read row by row.
 */
function embeddingsOf(
  column: Vector,
  shard: OpenShard,
  start: number,
  dim: number,
  name: string,
): Float32Array[] {
  const out: Float32Array[] = []
  const fail = (row: number, message: string, hint: string): never => {
    throw new EmbeddingColumnError(shard.name, `row ${row}: column '${name}' ${message}`, hint)
  }
  const check = (vector: Float32Array, row: number) => {
    for (let d = 0; d < vector.length; d++) {
      if (!Number.isFinite(vector[d]!)) {
        fail(row, `component ${d} is ${vector[d]}`, 'embeddings must be finite numbers')
      }
    }
  }
  const flat = column.data.map(flatLists)
  if (flat.every((f) => f !== undefined)) {
    let row = start
    for (const { values, starts, lengths } of flat as FlatLists[]) {
      for (let i = 0; i < starts.length; i++, row++) {
        const length = lengths[i]!
        if (length < 0) fail(row, 'is null', 'every row needs a vector')
        if (length !== dim) {
          fail(
            row,
            `has ${length} dimensions, the others ${dim}`,
            'every vector of an embedding column has the same dimension',
          )
        }
        const raw = values.subarray(starts[i]!, starts[i]! + length)
        // Checked as stored: a float64 beyond float32's range is refused, not made infinite.
        const vector = raw instanceof Float32Array ? raw : Float32Array.from(raw)
        check(vector, row)
        out.push(vector)
      }
    }
    return out
  }
  for (let i = 0; i < column.length; i++) {
    const value = column.get(i) as { toArray(): ArrayLike<number> } | null
    const row = start + i
    if (value === null) fail(row, 'is null', 'every row needs a vector')
    const raw = value!.toArray()
    if (raw.length !== dim) {
      fail(
        row,
        `has ${raw.length} dimensions, the others ${dim}`,
        'every vector of an embedding column has the same dimension',
      )
    }
    const vector = raw instanceof Float32Array ? raw : Float32Array.from(raw)
    check(vector, row)
    out.push(vector)
  }
  return out
}

function labelsOf(table: Table, shard: OpenShard, start: number): string[] {
  const column = table.getChild('label')!
  const names = shard.layout.labelNames
  const out: string[] = []
  for (let i = 0; i < column.length; i++) {
    const value = column.get(i) as string | number | bigint | null
    if (value === null) throw new ShardError(shard.name, `row ${start + i}: label is null`)
    if (typeof value === 'string') {
      out.push(value)
      continue
    }
    const index = Number(value)
    if (names !== null) {
      const label = names[index]
      if (label === undefined) {
        throw new ShardError(
          shard.name,
          `row ${start + i}: label ${index} is not a class of its ClassLabel (${names.length} names)`,
        )
      }
      out.push(label)
    } else {
      out.push(String(value))
    }
  }
  return out
}

function imagesOf(table: Table, shard: OpenShard, start: number): Uint8Array[] {
  const column = table.getChild('image')!
  const bytes = shard.layout.image === 'struct' ? column.getChild('bytes')! : column
  const out: Uint8Array[] = []
  for (let i = 0; i < bytes.length; i++) {
    const value = (
      shard.layout.image === 'struct' && !column.isValid(i) ? null : bytes.get(i)
    ) as Uint8Array | null
    if (value === null) {
      throw new ShardError(
        shard.name,
        `row ${start + i}: image has no bytes`,
        'ingest stores the image bytes; a dataset with only image paths needs them embedded (datasets: cast_column("image", Image(decode=True)) then save)',
      )
    }
    out.push(value)
  }
  return out
}

/**
 * The decode thread's digests of `images`, if it took them for exactly these values (the
 * same count, each the same length), else undefined: the append then hashes the images itself.
 */
function digestsOf(images: readonly Uint8Array[], digests: RowDigests | undefined): Uint8Array | undefined {
  if (digests === undefined || digests.lengths.length !== images.length) return undefined
  for (let i = 0; i < images.length; i++) if (digests.lengths[i] !== images[i]!.byteLength) return undefined
  return digests.sha256
}

/** The image struct's `path` of each row (null where it has none). */
function pathsOf(table: Table): (string | null)[] {
  const column = table.getChild('image')!
  const paths = column.getChild('path')!
  return Array.from({ length: column.length }, (_, i) =>
    column.isValid(i) ? ((paths.get(i) as string | null) ?? null) : null,
  )
}

/** The claim of training the index, beside the shards' (no shard's name is this: they end in `.parquet`). */
const INDEX_CLAIM = '(index)'

/** A manifest's CID, as a commit names the head it starts after (`CommitOptions.since`). */
type ManifestCid = Exclude<CommitOptions['since'], null | undefined>

/**
 * What the branch's history says is ingested, read incrementally: each refresh walks back
 * from the head only to the commits already read (`committedChunks` reads it all).
 */
class History {
  readonly committed: Committed = { ranges: new Map(), plans: new Map() }
  /** Rows of the commits read so far, this run's own excepted. */
  rows = 0
  /** The head read last (`null`: the branch did not exist): every commit up to it is read. */
  head: ManifestCid | null = null
  readonly #seen = new Set<string>()
  readonly #own = new Set<string>()
  /**
   * Where manifests are loaded from: the dataset's repository once it is open, which keeps
   * the manifests its commits put, so this run's own commits are not read back from the
   * store (one GET each on S3). The head is always read from the store.
   */
  #manifests: Pick<Repository, 'loadManifest'>
  constructor(
    private readonly repo: Repository,
    private readonly ref: string,
  ) {
    this.#manifests = repo
  }

  /** Load manifests through `repository` (the one the appends commit through) from now on. */
  loadThrough(repository: Pick<Repository, 'loadManifest'>): void {
    this.#manifests = repository
  }

  /** A commit of this run (its rows are not counted as others'). */
  own(manifest: string): void {
    this.#own.add(manifest)
  }

  async refresh(signal: AbortSignal): Promise<void> {
    const head = await this.repo.readRef(this.ref, { signal })
    if (head === undefined) return
    const queue = [head.manifest]
    const found: { manifest: string; entry: Manifest }[] = []
    while (queue.length > 0) {
      const cid = queue.shift()!
      const key = cid.toString()
      if (this.#seen.has(key)) continue
      this.#seen.add(key)
      const manifest = await this.#manifests.loadManifest(cid, { signal })
      found.push({ manifest: key, entry: manifest })
      queue.push(...manifest.parents)
    }
    for (const { manifest, entry } of found) {
      if (entry.change.kind !== 'append') continue
      const chunk = chunkOf({ manifest, message: entry.message, ...(entry.meta ? { meta: entry.meta } : {}) })
      if (chunk === undefined) continue
      addChunk(this.committed, chunk)
      if (!this.#own.has(manifest)) this.rows += chunk.end - chunk.start
    }
    this.head = head.manifest
  }
}

/** Wait (`lease.waitMs`) while an ingest from before shard claims holds the dataset's lease. */
async function waitForOldLease(repo: Repository, options: IngestOptions, signal: AbortSignal): Promise<void> {
  const started = Date.now()
  const waitMs = options.lease?.waitMs ?? 0
  let waitedFor: string | undefined
  for (;;) {
    const holder = await liveLease(repo.store, options.dataset, { signal })
    if (holder === undefined) return
    const waited = Date.now() - started
    if (waited >= waitMs) {
      throw new IngestLockedError(
        options.dataset,
        holder,
        `that ingest is an older DreamDB's, which takes the whole dataset; run this one when it is done, or wait for it (lease.waitMs; dreamdb ingest --wait) (its lease expires at ${new Date(holder.expires).toISOString()} unless renewed)`,
      )
    }
    if (waitedFor !== holder.token) {
      waitedFor = holder.token
      options.onProgress?.({ kind: 'lease-wait', holder })
    }
    await delay(
      Math.max(
        10,
        Math.min(options.lease?.pollMs ?? 1000, waitMs - waited, holder.expires - Date.now() + 10),
      ),
      undefined,
      { signal },
    )
  }
}

const isCode = (error: unknown, code: string) => (error as { code?: string } | null)?.code === code

/** Ingest the shards of `options.splits` under `options.root` into `options.dataset` on `repo`. */
export async function ingest(repo: Repository, options: IngestOptions): Promise<IngestResult> {
  const started = Date.now()
  const signal = options.signal ?? new AbortController().signal
  const batchRecords = options.batchRecords ?? 1024
  const source = options.embedding
  const embeddingColumn = source.kind === 'column' ? source.column : undefined

  // 1. Shards and their columns (footers only).
  const files = await findShards(options.root, options.splits)
  const shards: OpenShard[] = []
  for (const file of files) {
    signal.throwIfAborted()
    shards.push(await openShard(file, embeddingColumn))
  }

  // 2. The embedding dimension: the column's fixed size, its first row, or the model's output.
  let embedder: Embedder | undefined
  let dim: number
  if (source.kind === 'model') {
    embedder = await loadModel(source, options.cwd)
    dim = embedder.dim
  } else {
    dim = await columnDim(shards, source.column)
  }

  const token = holderToken()
  /** Claims this run holds now (released in `finally`, whatever happened). */
  const held = new Set<IngestLease>()
  /**
   * Releases of finished shards' claims under way: off the commit chain (each is a ref
   * delete, fsynced on a folder), so the next chunk's commit does not wait for it; awaited
   * before returning.
   */
  const releasing: Promise<void>[] = []
  try {
    // 3. An ingest from before shard claims holds the whole dataset's lease and knows no
    // claims: wait for it (design/0006). Then read what is already in.
    assertUserRefName(options.dataset)
    await waitForOldLease(repo, options, signal)
    return await work()
  } finally {
    await Promise.all([...releasing, ...[...held].map((claim) => claim.release())])
    await embedder?.close()
  }

  async function work(): Promise<IngestResult> {
    // 4. The fields: every shard has the same columns (in `all` mode), an existing
    // dataset's schema must match, and its history says what is already in.
    let mode: ColumnMode = options.columns ?? 'all'
    const first = shards[0]!
    const full = () => {
      for (const shard of shards) {
        if (columnsKey(shard) !== columnsKey(first)) {
          const list = (s: OpenShard) =>
            s.layout.others.map((c) => c.name).join(', ') + (s.layout.imagePath ? ' (image with path)' : '')
          throw new ShardError(
            shard.name,
            `has other columns than ${first.name}: ${list(shard) || 'none'}, not ${list(first) || 'none'}`,
            CORE_HINT,
          )
        }
      }
      return fullSchema(dim, first)
    }
    let fields = mode === 'core' ? coreSchema(dim) : full()
    const history = new History(repo, options.dataset)
    let opened: Promise<Dataset> | undefined
    /** Whether an existing dataset has the fields this ingest writes (adopting `core` for an old one). */
    const checkSchema = (ds: Dataset) => {
      if (ds.ref === null) throw new ReadOnlyDatasetError(`the snapshot '${options.dataset}'`)
      const have = ds.manifest.schema.fields
      if (mode === 'all' && !sameFields(have, fields) && sameFields(have, coreSchema(dim))) {
        // A dataset ingested before every column was kept: it goes on as it began.
        mode = 'core'
        fields = coreSchema(dim)
      }
      if (!sameFields(have, fields)) {
        throw new SchemaMismatchError(
          `Dataset '${options.dataset}' exists with other fields: ${have.map(describeField).join(', ')}; ingest writes ${fields.map(describeField).join(', ')}`,
          `choose another dataset name; dreamdb inspect --ref-name ${options.dataset} shows its schema`,
        )
      }
    }
    if ((await repo.readRef(options.dataset, { signal })) !== undefined) {
      const ds = await Dataset.openRef(options.dataset, { backend: repo.store, signal })
      opened = Promise.resolve(ds)
      checkSchema(ds)
      history.loadThrough(ds.repository)
      await history.refresh(signal)
    }
    const kept = mode === 'all' ? first.layout.others.filter((c) => c.kind !== null).map((c) => c.name) : []
    const skippedColumns = first.layout.others.filter((c) => mode === 'core' || c.kind === null)

    /** The shard's rows not yet in the dataset, as chunks; throws if the shard changed. */
    const pendingOf = (shard: OpenShard): Chunk[] => {
      const done = history.committed.ranges.get(shard.name)
      if (done !== undefined && (done.fingerprint !== shard.fingerprint || done.rows !== shard.rows)) {
        throw new ShardChangedError(
          `${shard.name} has changed since part of it was ingested into '${options.dataset}' (then ${done.rows} rows [${done.fingerprint}], now ${shard.rows} rows [${shard.fingerprint}])`,
          'restore the file that was ingested, or ingest into a new dataset name',
        )
      }
      if (done !== undefined && done.split !== shard.split) {
        throw new ShardChangedError(
          `${shard.name} was ingested as split '${done.split}', not '${shard.split}'`,
          'ingest into a new dataset name to change the splits',
        )
      }
      return pendingChunks(shard, done?.ranges ?? [], batchRecords)
    }
    const splits: Record<string, SplitSummary> = {}
    let total = 0
    let chunkCount = 0
    for (const shard of shards) {
      splits[shard.split] ??= { shards: 0, records: 0, ingested: 0, skipped: 0 }
      const summary = splits[shard.split]!
      summary.shards++
      summary.records += shard.rows
      const pending = pendingOf(shard)
      chunkCount += pending.length
      total += pending.reduce((n, c) => n + c.end - c.start, 0)
    }
    const skipped = shards.reduce((n, s) => n + s.rows, 0) - total

    // Every pending row's embedding is checked before the first write, reading that column
    // alone: bad input fails with nothing written (the project's rule), even though each
    // chunk's vectors are decoded again when it is ingested. Rows other ingests take are
    // checked too: any ingest of a bad plan fails before it writes.
    // Rows come back in shared buffers used again and again (TransferBuffers): a chunk's
    // are given back once its append returned, a check's once checked. Up to `concurrency`
    // chunks are read ahead and `concurrency` more are being stored.
    const buffers = new TransferBuffers(2 * Math.max(1, options.concurrency ?? 2) + 1)
    if (embeddingColumn !== undefined) {
      for (const shard of shards) {
        for (const chunk of pendingOf(shard)) {
          signal.throwIfAborted()
          const table = await readRows(chunk.shard, chunk.start, chunk.end, [embeddingColumn], { buffers })
          embeddingsOf(table.getChild(embeddingColumn)!, chunk.shard, chunk.start, dim, embeddingColumn)
          buffers.giveBack(table)
        }
      }
    }
    options.onProgress?.({
      kind: 'planned',
      total,
      skipped,
      shards: shards.length,
      chunks: chunkCount,
      skippedColumns,
    })

    // 5. Anchors in source order: row r of the plan's shard s is anchor `plan + offset(s) + r`.
    // A re-run of the same plan finds its first anchor in the history and gives the rows it
    // appends the anchors the interrupted run would have; a shard begun (by any ingest, under
    // any plan) keeps the anchors it began with. The plan's range is reserved when the first
    // chunk is ready to commit, so that a failure before that leaves nothing behind; ingests
    // running at once that both find no plan in the history reserve one each (anchors stay
    // unique: each shard's come from the range of whichever ingest began it).
    const digest = planDigest(shards)
    const offsets = new Map<string, bigint>()
    let planRows = 0n
    for (const shard of shards) {
      offsets.set(shard.name, planRows)
      planRows += BigInt(shard.rows)
    }
    let reserved: Promise<bigint> | undefined
    const planAnchor = (): Promise<bigint> => {
      const known = history.committed.plans.get(digest)
      if (known !== undefined) return Promise.resolve(known)
      reserved ??= repo.mintAnchors(Number(planRows), { signal })
      return reserved
    }
    const anchorOf = async (chunk: Chunk): Promise<bigint> => {
      const start = BigInt(chunk.start)
      const own = history.committed.ranges.get(chunk.shard.name)?.anchor
      if (own !== undefined) return own + start
      return (await planAnchor()) + offsets.get(chunk.shard.name)! + start
    }

    const wait = (message: string) => options.onProgress?.({ kind: 'waiting', message })
    /**
     * A write that found its ref locked, tried again. A writer killed while it held a folder
     * store's ref lock leaves the lock behind; the store breaks it once it is stale, which can
     * be later than one wait lasts, so a re-run right after a kill needs a second wait.
     */
    const retryLocked = <T>(write: () => Promise<T>): Promise<T> =>
      pRetry(write, {
        retries: 2,
        // The store has waited for the lock already.
        minTimeout: 0,
        signal,
        shouldRetry: ({ error }) => isCode(error, 'ERR_CAS_REF_LOCKED'),
        onFailedAttempt: ({ error, retriesLeft }) => {
          if (isCode(error, 'ERR_CAS_REF_LOCKED') && retriesLeft > 0) {
            wait(`${error.message.split(';')[0]}; waiting for it to go stale (a writer was interrupted)`)
          }
        },
      })

    // 6. The dataset: created when the first chunk is ready to commit, so that a failure
    // before that (an unreadable image, Ctrl-C) leaves nothing behind. Another ingest may
    // create it first: then it is opened, and must have these fields.
    let created = false
    const dataset = (claim: IngestLease): Promise<Dataset> => {
      opened ??= retryLocked(async () => {
        claim.assertHeld()
        try {
          const ds = await Dataset.create(options.dataset, {
            backend: repo.store,
            schema: { fields },
            signal,
          })
          created = true
          history.loadThrough(ds.repository)
          return ds
        } catch (error) {
          if (!isCode(error, 'ERR_MANIFEST_REF_EXISTS')) throw error
          const ds = await Dataset.openRef(options.dataset, { backend: repo.store, signal })
          checkSchema(ds)
          history.loadThrough(ds.repository)
          return ds
        }
      })
      return opened
    }

    // 7. Shards are claimed one at a time (design/0006), in plan order, skipping those
    // complete and those another live ingest holds; the history is read again after each
    // claim, so the rows another ingest committed before it let go are not written twice.
    // Reading and embedding run `concurrency` chunks ahead; chunks commit one at a time, in
    // claim order (source order for one ingest alone). When every shard left is held by
    // others, this ingest commits what it has, then waits for them to finish, or to die
    // and be taken over, so that whichever ingest returns last returns with everything in.
    const l = options.lease ?? {}
    const claimOptions = {
      ...(l.ttlMs !== undefined ? { ttlMs: l.ttlMs } : {}),
      ...(l.renewMs !== undefined ? { renewMs: l.renewMs } : {}),
      ...(l.command !== undefined ? { command: l.command } : {}),
      signal,
      onTakeOver: (holder: LeaseHolder, why: 'expired' | 'dead') =>
        options.onProgress?.({ kind: 'lease-taken-over', holder, why }),
    }
    // Waiting ingests look often: the one that finishes a plan's last shard is waited for by
    // all the others (one ref read per held shard per look).
    const pollMs = l.pollMs ?? Math.min(250, Math.max(10, (l.ttlMs ?? DEFAULT_LEASE_TTL_MS) / 8))
    /** Read the commits made since the last read; rows other ingests committed meanwhile are reported. */
    let reported = history.rows
    const refresh = async () => {
      // A dataset being created now is waited for: its manifests are then read through its
      // repository, which has them (a refresh in between would fetch its first one).
      await opened?.catch(() => {})
      await history.refresh(signal)
      if (history.rows > reported) {
        options.onProgress?.({ kind: 'others', records: history.rows - reported })
        reported = history.rows
      }
    }
    /** Shards this run has finished, or found finished. */
    const finished = new Set<string>()
    /** Chunks of a claimed shard not committed yet, by shard name. */
    const remaining = new Map<
      string,
      {
        claim: IngestLease
        /** Chunks not committed yet. */
        chunks: number
        /** The rows the claim was taken for. */
        rows: Chunk[]
        /**
         * A head up to which no other ingest's commit of those rows is on the branch: at first
         * the history the chunks were cut from, then each chunk's own commit (its walk tested
         * every commit under it for all of the claim's rows).
         */
        since: ManifestCid | null
      }
    >()
    type Next = { claim: IngestLease; chunks: Chunk[] } | { busy: { shard: string; holder: LeaseHolder }[] }
    /**
     * Shards found held by live ingests, skipped without asking the store again until a wait
     * (with hundreds of shards, each claim would otherwise read every held one's ref).
     */
    const knownBusy = new Map<string, LeaseHolder>()
    /** Whether a claim was ever found held by another ingest (then claims read before they create). */
    let othersSeen = false
    const claimNext = async (): Promise<Next | undefined> => {
      const busy: { shard: string; holder: LeaseHolder }[] = []
      for (const shard of shards) {
        if (finished.has(shard.name) || remaining.has(shard.name)) continue
        if (pendingOf(shard).length === 0) {
          finished.add(shard.name)
          continue
        }
        const known = knownBusy.get(shard.name)
        if (known !== undefined && known.expires > Date.now()) {
          busy.push({ shard: shard.name, holder: known })
          continue
        }
        const taken = await takeShardClaim(repo.store, options.dataset, shard.name, token, {
          ...claimOptions,
          // Alone so far (no claim found held, no rows of others seen): the shard is free.
          createFirst: !othersSeen && history.rows === 0,
        })
        if ('busy' in taken) {
          othersSeen = true
          knownBusy.set(shard.name, taken.busy)
          busy.push({ shard: shard.name, holder: taken.busy })
          continue
        }
        held.add(taken.lease)
        await refresh()
        const chunks = pendingOf(shard)
        if (chunks.length === 0) {
          finished.add(shard.name)
          held.delete(taken.lease)
          await taken.lease.release()
          continue
        }
        remaining.set(shard.name, {
          claim: taken.lease,
          chunks: chunks.length,
          rows: chunks,
          since: history.head,
        })
        return { claim: taken.lease, chunks }
      }
      return busy.length > 0 ? { busy } : undefined
    }

    // 8. Chunks: read and embed ahead, then append, each its own commit.
    let bytes = 0
    let commits = 0
    const columns = ['image', 'label', ...(embeddingColumn !== undefined ? [embeddingColumn] : []), ...kept]
    /** Read, decode and embed a chunk: its records. Every value is checked here, before its commit. */
    const prepare = async (chunk: Chunk): Promise<Prepared> => {
      // Every column of the chunk: most of the file's bytes for its rows (decode-worker.js).
      // Each image hashed on the decode thread as it is handed over (the dataset's binary
      // index needs its digest): the main thread, which encodes, stores and commits, then
      // hashes each image's bytes once (its fragment's object) instead of twice.
      const { table, digests } = await readRowsHashed(chunk.shard, chunk.start, chunk.end, columns, {
        whole: true,
        buffers,
        hash: chunk.shard.layout.image === 'struct' ? ['image', 'bytes'] : ['image'],
      })
      const images = imagesOf(table, chunk.shard, chunk.start)
      const labels = labelsOf(table, chunk.shard, chunk.start)
      const vectors =
        embedder !== undefined
          ? await embedder.embed(images, (i) => `${chunk.shard.name} row ${chunk.start + i}`)
          : embeddingsOf(table.getChild(embeddingColumn!)!, chunk.shard, chunk.start, dim, embeddingColumn!)
      const paths = mode === 'all' && chunk.shard.layout.imagePath ? pathsOf(table) : undefined
      const others = kept.map((name) => [name, table.getChild(name)!] as const)
      const records = images.map((image, i) => {
        const record: DatasetRecord = {
          image,
          embedding: vectors[i]!,
          label: labels[i]!,
          split: chunk.shard.split,
        }
        if (mode === 'all') {
          if (paths !== undefined) record.image_path = paths[i]!
          record.source_shard = chunk.shard.name
          record.source_row = chunk.start + i
          for (const [name, column] of others) record[name] = column.get(i) ?? null
        }
        return record
      })
      return {
        records,
        size: images.reduce((n, b) => n + b.byteLength, 0),
        table,
        digests: digestsOf(images, digests),
      }
    }
    type Flight = { chunk: Chunk; claim: IngestLease; ready: Promise<Prepared> }
    /**
     * Store a chunk's objects, then commit it once `previous` (the commit of the chunk before
     * it, in source order) has landed: the next chunk's encoding, hashing and writing overlap
     * the commit before it, while commits still land one at a time, in order. Every object is
     * durable before the commit that names it (the store fsyncs each before it returns); a
     * failed commit stops the ones after it before they commit (their objects stay
     * unreferenced, for GC).
     */
    const commitOne = async ({ chunk, claim, ready }: Flight, previous: Promise<void>) => {
      const { records, size, table, digests } = await ready
      try {
        await commitRecords(chunk, claim, records, size, digests, previous)
      } finally {
        // The append has returned: no view of the chunk's rows is read any more (the
        // records are dropped with this call; the append keeps none).
        buffers.giveBack(table)
      }
    }
    const commitRecords = async (
      chunk: Chunk,
      claim: IngestLease,
      records: DatasetRecord[],
      size: number,
      digests: Uint8Array | undefined,
      previous: Promise<void>,
    ) => {
      // A signal per chunk: listeners that writes leave on it (a commit's retry backoff)
      // are dropped with it instead of piling up on the command's signal. A lost claim
      // stops the commit too.
      const chunkSignal = AbortSignal.any([signal, claim.signal])
      chunkSignal.throwIfAborted()
      const ds = await dataset(claim)
      const anchor = await anchorOf(chunk)
      const plan = { digest, anchor: await planAnchor() }
      // The claim is a lease, not part of the branch's swap: a holder stopped between its
      // check and its commit can wake after another ingest took the shard over and committed
      // these rows. The commit itself shows this test every commit it lands after, since the
      // claim's `since` (design/0006).
      const claimed = remaining.get(chunk.shard.name)!
      let landsTwice: string | undefined
      const conflictsWith = (theirs: Manifest, cid: ManifestCid): string | undefined => {
        // This ingest's other chunks of the shard may land first (in any order with `order: 'any'`).
        if (isMap(theirs.meta?.ingest) && theirs.meta.ingest.run === token) return undefined
        const other = chunkOf({
          manifest: cid.toString(),
          message: theirs.message,
          ...(theirs.meta !== undefined ? { meta: theirs.meta } : {}),
        })
        if (other?.shard !== chunk.shard.name) return undefined
        if (!claimed.rows.some((c) => other.start < c.end && c.start < other.end)) return undefined
        landsTwice = `rows ${other.start}-${other.end} of ${chunk.shard.name} were committed by another ingest meanwhile (${cid})`
        return landsTwice
      }
      let manifest: string
      try {
        manifest = await retryLocked(() =>
          ds.appendMany(records, {
            message: chunkMessage(chunk),
            meta: chunkMeta(chunk, anchor, plan, token),
            anchorStart: anchor,
            ...(digests !== undefined ? { digests: { image: digests } } : {}),
            signal: chunkSignal,
            beforeCommit: async () => {
              await previous
              // Commit only while the claim is surely ours (design/0006): checked after the
              // objects are stored, right before the commit.
              claim.assertHeld()
            },
            since: claimed.since,
            conflictsWith,
          }),
        )
      } catch (error) {
        if (landsTwice !== undefined && isCode(error, 'ERR_MANIFEST_CONFLICT')) throw claim.lose(landsTwice)
        throw error
      }
      history.own(manifest)
      claimed.since = parseCid(manifest)
      bytes += size
      commits++
      splits[chunk.shard.split]!.ingested += records.length
      options.onProgress?.({
        kind: 'chunk',
        split: chunk.shard.split,
        shard: chunk.shard.name,
        start: chunk.start,
        end: chunk.end,
        records: records.length,
        bytes: size,
      })
      if (--claimed.chunks === 0) {
        remaining.delete(chunk.shard.name)
        finished.add(chunk.shard.name)
        held.delete(claim)
        releasing.push(claim.release())
      }
    }
    const ordered = (options.order ?? 'source') === 'source'
    const concurrency = Math.max(1, options.concurrency ?? 2)
    const flights: Flight[] = []
    /** Chunks storing their objects or committing, oldest first (at most `concurrency`). */
    const committing: Promise<void>[] = []
    let lastCommit: Promise<void> = Promise.resolve()
    /** Start the next chunk's writes; wait for the oldest commit while `concurrency` are under way. */
    const commitNext = async () => {
      let index = 0
      if (!ordered) {
        // The first chunk ready (a failed one counts as ready: its error is thrown now).
        index = await Promise.race(
          flights.map((f, i) =>
            f.ready.then(
              () => i,
              () => i,
            ),
          ),
        )
      }
      const [flight] = flights.splice(index, 1)
      const done = commitOne(flight!, ordered ? lastCommit : Promise.resolve())
      // Settled before it is awaited when an earlier commit fails: not unhandled.
      done.catch(() => {})
      lastCommit = done
      committing.push(done)
      while (committing.length >= concurrency) await committing.shift()
    }
    const drain = async () => {
      while (flights.length > 0) await commitNext()
      while (committing.length > 0) await committing.shift()
    }
    let waitingFor = ''
    try {
      for (;;) {
        signal.throwIfAborted()
        // Claim ahead once the chunks in flight, but the newest, are read: the next shard's
        // claim (a ref write and a history read) overlaps the newest chunk's decoding, and
        // its first read the commits before it (with shards of one chunk, waiting for every
        // read left the decode thread idle during each claim), while an ingest holds at most
        // `concurrency` shards not yet read: shards are not all taken at once by the first
        // ingest to start, leaving the others nothing to do.
        await Promise.allSettled(flights.slice(0, -1).map((f) => f.ready))
        const next = await claimNext()
        if (next === undefined) break
        if ('busy' in next) {
          // Everything left is another ingest's: finish ours, then look again.
          await drain()
          const key = next.busy.map((b) => `${b.shard} ${b.holder.token}`).join('\n')
          if (key !== waitingFor) {
            waitingFor = key
            options.onProgress?.({ kind: 'claims-wait', shards: next.busy })
          }
          const soonest = Math.min(...next.busy.map((b) => b.holder.expires))
          await delay(Math.max(10, Math.min(pollMs, soonest - Date.now() + 10)), undefined, { signal })
          // Look at every held shard again: finished, released, dead or expired by now.
          knownBusy.clear()
          await refresh()
          continue
        }
        for (const chunk of next.chunks) {
          const ready = prepare(chunk)
          // Settled before it is awaited when an earlier commit fails: not unhandled.
          ready.catch(() => {})
          flights.push({ chunk, claim: next.claim, ready })
          while (flights.length >= concurrency) await commitNext()
        }
      }
      await drain()
    } catch (error) {
      // Nothing lands after this returns: the reads still running are let go (their
      // results are dropped), and the commits under way are waited for (each after the
      // failed one stops before its commit; one before it may still land, as it would have).
      await Promise.allSettled([...flights.map((f) => f.ready), ...committing])
      // Work stopped because a claim was lost: say that, not "interrupted".
      const lost = [...held].find((c) => c.signal.aborted)
      if (lost !== undefined) throw lost.signal.reason
      throw error
    }
    // Rows of these shards that other ingests appended while this one ran.
    for (const shard of shards) {
      const summary = splits[shard.split]!
      summary.skipped = summary.records - summary.ingested
    }

    // 9. IVF + RaBitQ on the embedding field, unless it already has them (appends since are
    // encoded against its centroids; `dreamdb migrate` retrains). Of ingests finishing
    // together, the one that claims the index trains it; the others wait for it.
    // Another ingest may have created the dataset and written every shard while this one waited.
    opened ??= Dataset.openRef(options.dataset, { backend: repo.store, signal }).then((ds) => {
      checkSchema(ds)
      return ds
    })
    const ds = await opened
    let index: IngestResult['index'] = null
    if (options.index !== undefined) {
      const { algorithm, bits } = options.index
      let trained = false
      for (;;) {
        const taken = await takeShardClaim(repo.store, options.dataset, INDEX_CLAIM, token, claimOptions)
        if ('busy' in taken) {
          await delay(pollMs, undefined, { signal })
          continue
        }
        held.add(taken.lease)
        await ds.refresh({ signal })
        const field = ds.manifest.schema.fields.find((f) => f.name === 'embedding')
        if (!(field?.family === 'embedding' && field.algorithm === algorithm)) {
          options.onProgress?.({ kind: 'indexing', algorithm, bits })
          await retryLocked(() => {
            taken.lease.assertHeld()
            return ds.migrate({
              field: 'embedding',
              algorithm,
              bits,
              signal: AbortSignal.any([signal, taken.lease.signal]),
              message: `ingest: ${algorithm} (${bits} bit${bits === 1 ? '' : 's'}) on embedding`,
            })
          })
          trained = true
        }
        held.delete(taken.lease)
        await taken.lease.release()
        break
      }
      index = { algorithm, bits, trained }
    }
    await ds.refresh({ signal })
    const ingested = Object.values(splits).reduce((n, s) => n + s.ingested, 0)
    return {
      dataset: options.dataset,
      backend: repo.store.url,
      manifest: ds.currentManifest(),
      created,
      embedding:
        embedder !== undefined
          ? { source: 'model', model: embedder.path, output: embedder.output, dim }
          : { source: 'column', column: embeddingColumn!, dim },
      columns: { mode, fields: fields.map((f) => f.name), kept, skipped: skippedColumns },
      splits,
      records: {
        ingested,
        skipped: shards.reduce((n, s) => n + s.rows, 0) - ingested,
        total: ds.manifest.stats.records,
      },
      bytes,
      commits,
      index,
      seconds: (Date.now() - started) / 1000,
    }
  }
}
/** The dimension of an embedding column: its fixed size, or the first row's length. */
async function columnDim(shards: OpenShard[], column: string): Promise<number> {
  const fixed = shards.map((s) => s.layout.embeddingDim)
  const first = fixed.find((d) => d !== null)
  for (const [i, d] of fixed.entries()) {
    if (d !== null && first !== undefined && first !== null && d !== first) {
      throw new EmbeddingColumnError(
        shards[i]!.name,
        `column '${column}' has dimension ${d}, other shards ${first}`,
        'every shard of a dataset has vectors of one dimension',
      )
    }
  }
  if (first !== undefined && first !== null) return first
  for (const shard of shards) {
    if (shard.rows === 0) continue
    const table = await readRows(shard, 0, 1, [column])
    const value = table.getChild(column)!.get(0) as { length: number } | null
    if (value === null) {
      throw new EmbeddingColumnError(
        shard.name,
        `row 0: column '${column}' is null`,
        'every row needs a vector',
      )
    }
    if (value.length < 1) {
      throw new EmbeddingColumnError(shard.name, `row 0: column '${column}' is an empty list`)
    }
    return value.length
  }
  throw new EmbeddingColumnError(
    shards[0]?.name ?? '(no shard)',
    'every shard is empty: no vector to size the field',
  )
}
