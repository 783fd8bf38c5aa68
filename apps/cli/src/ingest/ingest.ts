/**
 * Ingest Hugging Face-style parquet shards into a dataset: resumable, bounded-parallel,
 * and all-or-nothing per commit.
 *
 * Each commit appends one *chunk* (a range of rows of one shard) and says so in its
 * message: `ingest <split> <shard> rows <start>-<end> of <rows> [<fingerprint>]`. The
 * message is part of the manifest the commit creates, so a chunk's records and the record
 * that they were ingested land together or not at all. A re-run reads the branch's history,
 * skips the rows that are already committed, and appends only the rest: interrupted at any
 * point (Ctrl-C, SIGKILL, a lost connection) and run again, it finishes the job without
 * duplicating a record. Everything that can be checked before writing is checked first:
 * the shards' columns and types, the embedding column's dimension on every pending row (it
 * reads that column alone), the model, and the schema of an existing dataset.
 *
 * This module knows nothing about the command line (no printing, no exit codes): it
 * reports progress through a callback, so that it can move into a package as it is.
 */
import { Dataset, ReadOnlyDatasetError } from '@dreamdb/dataset'
import type { Field, FieldInput, Repository } from '@dreamdb/manifest'
import { assertUserRefName, log } from '@dreamdb/manifest'
import type { Table, Vector } from 'apache-arrow'
import { EmbeddingColumnError, SchemaMismatchError, ShardChangedError, ShardError } from '../errors.js'
import { acquireIngestLease, type IngestLease, type LeaseHolder } from './lease.js'
import { type Embedder, loadModel, type ModelOptions } from './model.js'
import { findShards, type OpenShard, openShard, readRows } from './shards.js'

export type EmbeddingSource = { kind: 'column'; column: string } | ({ kind: 'model' } & ModelOptions)

export interface IngestOptions {
  /** The folder of shards (`--root`). */
  root: string
  dataset: string
  splits: string[]
  embedding: EmbeddingSource
  /** Train and apply IVF + RaBitQ on the embedding field after the append. */
  index?: { algorithm: string; bits: number } | undefined
  /** Rows per commit. @default 1024 */
  batchRecords?: number
  /** Chunks read, embedded and uploaded at once. @default 2 */
  concurrency?: number
  /** For relative model paths. */
  cwd: string
  /**
   * The ingest lease (design/0006): one ingest per dataset at a time. `waitMs` is how long
   * to wait for another ingest's lease (0: fail at once with `ERR_CLI_INGEST_LOCKED`).
   */
  lease?: { waitMs?: number; ttlMs?: number; command?: string }
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
  /** Another ingest holds the dataset's lease; waiting for it (`--wait`). */
  | { kind: 'lease-wait'; holder: LeaseHolder }
  /** The lease of an ingest that is gone (dead on this host, or expired) was taken over. */
  | { kind: 'lease-taken-over'; holder: LeaseHolder; why: 'expired' | 'dead' }

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
  splits: Record<string, SplitSummary>
  records: { ingested: number; skipped: number; total: number }
  /** Image bytes appended by this run. */
  bytes: number
  commits: number
  index: { algorithm: string; bits: number; trained: boolean } | null
  seconds: number
}

/** The fields ingest writes. */
export function ingestSchema(dim: number): FieldInput[] {
  return [
    { name: 'image', family: 'binary', media: 'image' },
    { name: 'embedding', family: 'embedding', dim, metric: 'cosine' },
    { name: 'label', family: 'scalar', kind: 'categorical' },
    { name: 'split', family: 'scalar', kind: 'categorical' },
  ]
}

/** One commit's worth of rows. */
interface Chunk {
  shard: OpenShard
  start: number
  end: number
}

const MESSAGE = /^ingest (\S+) (\S+) rows (\d+)-(\d+) of (\d+) \[([0-9a-f]+)\]$/

export function chunkMessage(c: Chunk): string {
  return `ingest ${c.shard.split} ${encodeURI(c.shard.name)} rows ${c.start}-${c.end} of ${c.shard.rows} [${c.shard.fingerprint}]`
}

/** Rows of each shard already committed, from the branch's history: shard name -> ranges. */
export interface Committed {
  ranges: Map<string, { split: string; rows: number; fingerprint: string; ranges: [number, number][] }>
}

export async function committedChunks(
  repo: Repository,
  ref: string,
  options: { signal?: AbortSignal } = {},
): Promise<Committed> {
  const ranges: Committed['ranges'] = new Map()
  for (const entry of await log(repo, ref, options)) {
    if (entry.change.kind !== 'append') continue
    const m = MESSAGE.exec(entry.message)
    if (m === null) continue
    const name = decodeURI(m[2]!)
    const known = ranges.get(name) ?? { split: m[1]!, rows: Number(m[5]), fingerprint: m[6]!, ranges: [] }
    known.ranges.push([Number(m[3]), Number(m[4])])
    ranges.set(name, known)
  }
  return { ranges }
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

/** An existing dataset must have exactly the fields ingest writes, with the same types. */
function checkSchema(name: string, existing: readonly Field[], dim: number): void {
  const wanted = ingestSchema(dim)
  const same =
    existing.length === wanted.length &&
    wanted.every((w) => {
      const f = existing.find((e) => e.name === w.name)
      if (f === undefined || f.family !== w.family) return false
      if (w.family === 'embedding') return f.family === 'embedding' && f.dim === w.dim
      if (w.family === 'scalar') return f.family === 'scalar' && f.kind === w.kind
      return true
    })
  if (!same) {
    throw new SchemaMismatchError(
      `Dataset '${name}' exists with other fields: ${existing.map(describeField).join(', ')}; ingest writes ${wanted.map(describeField).join(', ')}`,
      `choose another --dataset-name; dreamdb inspect --ref-name ${name} shows its schema`,
    )
  }
}

/** The embedding of each row as a Float32Array of `dim`, checked. */
function embeddingsOf(
  column: Vector,
  shard: OpenShard,
  start: number,
  dim: number,
  name: string,
): Float32Array[] {
  const out: Float32Array[] = []
  for (let i = 0; i < column.length; i++) {
    const value = column.get(i) as { toArray(): ArrayLike<number> } | null
    const row = start + i
    if (value === null) {
      throw new EmbeddingColumnError(
        shard.name,
        `row ${row}: column '${name}' is null`,
        'every row needs a vector',
      )
    }
    const raw = value.toArray()
    if (raw.length !== dim) {
      throw new EmbeddingColumnError(
        shard.name,
        `row ${row}: column '${name}' has ${raw.length} dimensions, the others ${dim}`,
        'every vector of an embedding column has the same dimension',
      )
    }
    const vector = raw instanceof Float32Array ? raw : Float32Array.from(raw)
    for (let d = 0; d < dim; d++) {
      if (!Number.isFinite(vector[d]!)) {
        throw new EmbeddingColumnError(
          shard.name,
          `row ${row}: column '${name}' component ${d} is ${vector[d]}`,
          'embeddings must be finite numbers',
        )
      }
    }
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
 * Retry a write that found its ref locked. A writer killed while it held a folder store's
 * ref lock leaves the lock behind; the store breaks it once it is stale, which can be later
 * than one wait lasts, so a re-run right after a kill needs a second wait.
 */
async function retryLocked<T>(
  write: () => Promise<T>,
  onWait: (message: string) => void,
  attempts = 3,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await write()
    } catch (error) {
      if ((error as { code?: string }).code !== 'ERR_CAS_REF_LOCKED' || attempt >= attempts) throw error
      onWait(
        `${(error as Error).message.split(';')[0]}; waiting for it to go stale (a writer was interrupted)`,
      )
    }
  }
}

/** Run `work` over `items` with at most `limit` at once; the first failure stops the rest. */
async function bounded<T>(items: T[], limit: number, signal: AbortSignal, work: (item: T) => Promise<void>) {
  const queue = [...items]
  let failure: { error: unknown } | undefined
  const worker = async () => {
    while (queue.length > 0 && failure === undefined) {
      signal.throwIfAborted()
      const item = queue.shift()!
      try {
        await work(item)
      } catch (error) {
        failure ??= { error }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  if (failure !== undefined) throw failure.error
}

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

  let lease: IngestLease | undefined
  try {
    // 3. The lease, before reading what is already in: an ingest that waited for another
    // one then sees everything that one committed.
    assertUserRefName(options.dataset)
    lease = await acquireIngestLease(repo.store, options.dataset, {
      ...(options.lease?.waitMs !== undefined ? { waitMs: options.lease.waitMs } : {}),
      ...(options.lease?.ttlMs !== undefined ? { ttlMs: options.lease.ttlMs } : {}),
      ...(options.lease?.command !== undefined ? { command: options.lease.command } : {}),
      signal,
      onWait: (holder) => options.onProgress?.({ kind: 'lease-wait', holder }),
      onTakeOver: (holder, why) => options.onProgress?.({ kind: 'lease-taken-over', holder, why }),
    })
    const held = lease
    const leaseSignal = AbortSignal.any([signal, held.signal])
    return await work(held, leaseSignal).catch((error: unknown) => {
      // Work stopped because the lease was lost: say that, not "interrupted".
      if (held.signal.aborted) throw held.signal.reason
      throw error
    })
  } finally {
    await lease?.release()
    await embedder?.close()
  }

  async function work(lease: IngestLease, signal: AbortSignal): Promise<IngestResult> {
    // 4. The dataset: its schema must match, and its history says what is already in.
    const existing = await repo.readRef(options.dataset, { signal })
    let committed: Committed = { ranges: new Map() }
    let opened: Promise<Dataset> | undefined
    if (existing !== undefined) {
      const ds = await Dataset.openRef(options.dataset, { backend: repo.store, signal })
      opened = Promise.resolve(ds)
      if (ds.ref === null) throw new ReadOnlyDatasetError(`the snapshot '${options.dataset}'`)
      checkSchema(options.dataset, ds.manifest.schema.fields, dim)
      committed = await committedChunks(repo, options.dataset, { signal })
    }
    const chunks: Chunk[] = []
    const splits: Record<string, SplitSummary> = {}
    for (const shard of shards) {
      splits[shard.split] ??= { shards: 0, records: 0, ingested: 0, skipped: 0 }
      const summary = splits[shard.split]!
      summary.shards++
      summary.records += shard.rows
      const done = committed.ranges.get(shard.name)
      if (done !== undefined && (done.fingerprint !== shard.fingerprint || done.rows !== shard.rows)) {
        throw new ShardChangedError(
          `${shard.name} has changed since part of it was ingested into '${options.dataset}' (then ${done.rows} rows [${done.fingerprint}], now ${shard.rows} rows [${shard.fingerprint}])`,
          'restore the file that was ingested, or ingest into a new --dataset-name',
        )
      }
      if (done !== undefined && done.split !== shard.split) {
        throw new ShardChangedError(
          `${shard.name} was ingested as split '${done.split}', not '${shard.split}'`,
          'ingest into a new --dataset-name to change the splits',
        )
      }
      const pending = pendingChunks(shard, done?.ranges ?? [], batchRecords)
      const pendingRows = pending.reduce((n, c) => n + c.end - c.start, 0)
      summary.skipped += shard.rows - pendingRows
      chunks.push(...pending)
    }

    // 4. Every pending row's embedding, checked before the first write (that column alone).
    if (source.kind === 'column') {
      for (const chunk of chunks) {
        signal.throwIfAborted()
        const table = await readRows(chunk.shard, chunk.start, chunk.end, [source.column])
        embeddingsOf(table.getChild(source.column)!, chunk.shard, chunk.start, dim, source.column)
      }
    }

    const total = chunks.reduce((n, c) => n + c.end - c.start, 0)
    const skipped = Object.values(splits).reduce((n, s) => n + s.skipped, 0)
    options.onProgress?.({ kind: 'planned', total, skipped, shards: shards.length, chunks: chunks.length })

    const wait = (message: string) => options.onProgress?.({ kind: 'waiting', message })
    // 5. The dataset: created when the first chunk is ready to commit, so that a failure
    // before that (an unreadable image, Ctrl-C) leaves nothing behind.
    let created = false
    const dataset = (): Promise<Dataset> => {
      opened ??= retryLocked(() => {
        lease.assertHeld()
        return Dataset.create(options.dataset, {
          backend: repo.store,
          schema: { fields: ingestSchema(dim) },
          signal,
        })
      }, wait).then((ds) => {
        created = true
        return ds
      })
      return opened
    }

    // 6. Chunks: read, embed, append; a few at once, each its own commit.
    let bytes = 0
    let commits = 0
    await bounded(chunks, options.concurrency ?? 2, signal, async (chunk) => {
      // A signal per chunk: listeners that writes leave on it (a commit's retry backoff)
      // are dropped with it instead of piling up on the command's signal.
      const chunkSignal = AbortSignal.any([signal])
      const columns = ['image', 'label', ...(embeddingColumn !== undefined ? [embeddingColumn] : [])]
      const table = await readRows(chunk.shard, chunk.start, chunk.end, columns)
      const images = imagesOf(table, chunk.shard, chunk.start)
      const labels = labelsOf(table, chunk.shard, chunk.start)
      const vectors =
        embedder !== undefined
          ? await embedder.embed(images, (i) => `${chunk.shard.name} row ${chunk.start + i}`)
          : embeddingsOf(table.getChild(embeddingColumn!)!, chunk.shard, chunk.start, dim, embeddingColumn!)
      chunkSignal.throwIfAborted()
      const records = images.map((image, i) => ({
        image,
        embedding: vectors[i]!,
        label: labels[i]!,
        split: chunk.shard.split,
      }))
      const ds = await dataset()
      await retryLocked(() => {
        // Commit only while the lease is surely ours (design/0006).
        lease.assertHeld()
        return ds.appendMany(records, { message: chunkMessage(chunk), signal: chunkSignal })
      }, wait)
      const size = images.reduce((n, b) => n + b.byteLength, 0)
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
    })

    // 7. IVF + RaBitQ on the embedding field, unless it already has them (appends since are
    // encoded against its centroids; `dreamdb migrate` retrains).
    const ds = await dataset()
    await ds.refresh({ signal })
    let index: IngestResult['index'] = null
    if (options.index !== undefined) {
      const field = ds.manifest.schema.fields.find((f) => f.name === 'embedding')
      const trained = !(field?.family === 'embedding' && field.algorithm === options.index.algorithm)
      if (trained) {
        options.onProgress?.({ kind: 'indexing', ...options.index })
        const { algorithm, bits } = options.index
        await retryLocked(() => {
          lease.assertHeld()
          return ds.migrate({
            field: 'embedding',
            algorithm,
            bits,
            signal,
            message: `ingest: ${algorithm} (${bits} bit${bits === 1 ? '' : 's'}) on embedding`,
          })
        }, wait)
      }
      index = { ...options.index, trained }
    }
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
      splits,
      records: { ingested, skipped, total: ds.manifest.stats.records },
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
