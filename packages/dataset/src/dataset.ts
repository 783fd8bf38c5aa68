import {
  anchorsOf,
  type Codecs,
  type EmbeddingCodec,
  encodeBucket,
  isCompressed,
  putEncodedBucket,
  readBucketColumns,
  writeLayerSegment,
} from '@dreamdb/arrow'
import { type AbortOptions, openStore, type Store } from '@dreamdb/cas'
import {
  assertUserRefName,
  type Bucket,
  type BucketInput,
  checkLayer,
  type EmbeddingField,
  type Field,
  type FieldInput,
  type Manifest,
  RefExistsError,
  Repository,
  type ScalarKind,
  type SnapshotInfo,
} from '@dreamdb/manifest'
import {
  createCompressor,
  createVectorIndex,
  loadCompressor,
  loadSpatialIndex,
  type Metric,
  saveCompressor,
  saveSpatialIndex,
  trainSpatialIndex,
  type VectorIndex,
} from '@dreamdb/vector'
import type { Vector } from 'apache-arrow'
import { CID } from 'multiformats/cid'
import { ALGORITHMS, loadCodecs } from './codecs.js'
import { InvalidOptionError, InvalidSampleError, ReadOnlyDatasetError, UnknownFieldError } from './errors.js'
import { type BatchStream, type IterOptions, iterate, normalizeIterOptions } from './iterate.js'

/** Where a dataset lives: a backend URL (a folder by default) or an open store. */
export interface BackendOptions extends AbortOptions {
  backend: string | Store
}

/** One record: a value per base field. */
export type DatasetRecord = Record<string, unknown>

/** A layer sample: the anchor of a record and its value. */
export type Sample = readonly [anchor: bigint | number, value: unknown]

export interface AppendOptions extends AbortOptions {
  /**
   * Records per bucket (one object per field per bucket). @default a power of two from 1 024
   * to 8 192 that keeps a bucket's embeddings near 16 MiB (8 192 for 512-d float32)
   */
  bucketRecords?: number
  /** Bytes of binary values per bucket, at most. @default 64 MiB */
  bucketBytes?: number
  message?: string
}

export interface SearchOptions extends AbortOptions {
  /** How many nearest records. More than the dataset holds returns them all. */
  k: number
  /** Lists of the spatial index to scan (compressed fields). @default min(lists, 16) */
  nprobe?: number
  /** Exact distances on the kept full vectors. @default the field's `rerank` */
  rerank?: boolean
  /** Only records whose scalar fields equal these values, e.g. `{ split: 'train' }`. */
  filter?: Record<string, string | number | boolean | bigint>
}

export interface SearchHits {
  /** Anchors of the nearest records, closest first. */
  anchors: BigUint64Array
  /** Smaller is closer: squared L2, negative inner product, or 1 - cosine similarity. */
  distances: Float32Array
}

export interface MigrateOptions extends AbortOptions {
  /** The embedding field to re-encode. */
  field: string
  /** `dreamdb.ivf-cosine`, `dreamdb.ivf-l2` or `dreamdb.ivf-ip` (IVF + RaBitQ), or `null` for plain float32. */
  algorithm: string | null
  /** Bits per dimension of the codes, 1 to 8. @default 1 */
  bits?: number
  /** Keep the full float32 vectors beside the codes, for exact rerank. @default true */
  rerank?: boolean
  /** IVF lists to train. @default about sqrt(records) */
  lists?: number
  /** Reuse an operator-trained spatial index instead of training one. */
  spatialIndex?: string | CID
  /** Reuse an operator-published compressor instead of creating one. */
  compressor?: string | CID
  /** Seeds the training sample and the rotation. @default 0 */
  seed?: number
  message?: string
}

export interface CompactOptions extends AbortOptions {
  /**
   * Merge consecutive buckets until a merged bucket would pass this many records.
   * @default as `appendMany`'s `bucketRecords`
   */
  targetRecords?: number
}

export interface EmbeddingLayerInit {
  name: string
  parentField: string
  dim: number
  /** e.g. `dreamdb.ivf-cosine`; `null` stores float32 vectors. */
  algorithm?: string | null
  spatialIndex?: string | CID | null
  compressor?: string | CID | null
  rerank?: boolean
  metric?: Metric
  samples: readonly Sample[]
}

const repositories = new WeakMap<Store, Repository>()

async function repositoryFor(backend: string | Store, signal?: AbortSignal): Promise<Repository> {
  const store = typeof backend === 'string' ? await openStore(backend, signal ? { signal } : {}) : backend
  let repo = repositories.get(store)
  if (repo === undefined) {
    repo = new Repository(store)
    repositories.set(store, repo)
  }
  return repo
}

function asCid(value: string | CID | null | undefined, what: string): CID | null {
  if (value === null || value === undefined) return null
  const cid = CID.asCID(value)
  if (cid !== null) return cid
  try {
    return CID.parse(value as string)
  } catch {
    throw new InvalidOptionError(what, value, 'is not a CID')
  }
}

/**
 * A dataset at one ref (a branch you can write to) or at one pinned state (a snapshot or
 * manifest, read-only). Every write returns the new manifest's CID.
 */
export class Dataset {
  readonly repository: Repository
  /** The branch this dataset writes to, or `null` when opened at a pinned state. */
  readonly ref: string | null
  #manifestCid: CID
  #manifest: Manifest
  /** Loaded spatial indexes and compressors, by `spatialIndex/compressor` CIDs. */
  readonly #codecCache = new Map<string, Promise<EmbeddingCodec>>()
  /** Search indexes, by manifest and field. */
  readonly #searchIndexes = new Map<string, Promise<VectorIndex>>()

  private constructor(repository: Repository, ref: string | null, cid: CID, manifest: Manifest) {
    this.repository = repository
    this.ref = ref
    this.#manifestCid = cid
    this.#manifest = manifest
  }

  /** Create a dataset (its main branch is `name`). */
  static async create(
    name: string,
    init: BackendOptions & { schema: { fields: FieldInput[] } },
  ): Promise<Dataset> {
    const repo = await repositoryFor(init.backend, init.signal)
    // A taken name is refused before the dataset's first manifest is written, so a refused
    // create leaves nothing behind (name and schema are checked by createDataset first).
    assertUserRefName(name)
    const taken = await repo.readRef(name, init)
    if (taken !== undefined) throw new RefExistsError(name, taken.kind, taken.manifest.toString())
    await repo.createDataset(name, { schema: init.schema }, init)
    return await Dataset.openRef(name, {
      backend: repo.store,
      ...(init.signal ? { signal: init.signal } : {}),
    })
  }

  /** Open a dataset, branch or snapshot by name: two requests. */
  static async openRef(name: string, options: BackendOptions): Promise<Dataset> {
    const repo = await repositoryFor(options.backend, options.signal)
    const resolved = await repo.resolve(name, options)
    const writable = resolved.target.kind === 'branch' ? name : null
    return new Dataset(repo, writable, resolved.target.manifest, resolved.manifest)
  }

  /** Open a pinned state: a snapshot (as returned by `snapshot`), its label, or a manifest CID. */
  static async openAt(at: SnapshotInfo | string | CID, options: BackendOptions): Promise<Dataset> {
    const repo = await repositoryFor(options.backend, options.signal)
    const source =
      typeof at === 'object' && at !== null && 'label' in at
        ? CID.parse(at.manifest)
        : (CID.asCID(at) ?? (isCidString(at as string) ? CID.parse(at as string) : (at as string)))
    const resolved = await repo.resolve(source, options)
    return new Dataset(repo, null, resolved.target.manifest, resolved.manifest)
  }

  /** The CID of the manifest this dataset reads. */
  currentManifest(): string {
    return this.#manifestCid.toString()
  }

  get manifest(): Manifest {
    return this.#manifest
  }

  get store(): Store {
    return this.repository.store
  }

  /** Re-read the branch head (other writers may have moved it). */
  async refresh(options: AbortOptions = {}): Promise<string> {
    if (this.ref !== null) {
      const resolved = await this.repository.resolve(this.ref, options)
      this.#manifestCid = resolved.target.manifest
      this.#manifest = resolved.manifest
    }
    return this.currentManifest()
  }

  /** Pin this state under `label`: `{ label, manifest, timeline }`. Free to create, never moves. */
  async snapshot(label: string, options: AbortOptions = {}): Promise<SnapshotInfo> {
    return await this.repository.snapshot(label, this.#manifestCid, options)
  }

  /** A new branch at this state, opened for writing. One small write. */
  async branch(name: string, options: AbortOptions = {}): Promise<Dataset> {
    await this.repository.branch(name, this.#manifestCid, options)
    return new Dataset(this.repository, name, this.#manifestCid, this.#manifest)
  }

  /**
   * Append records: values are checked against the schema, encoded per field into objects
   * of at most `bucketRecords` records, stored, then committed in one manifest.
   */
  async appendMany(records: readonly DatasetRecord[], options: AppendOptions = {}): Promise<string> {
    const ref = this.#writableRef()
    if (!Array.isArray(records) || records.length === 0) {
      throw new InvalidOptionError(
        'records',
        Array.isArray(records) ? 'an empty list' : typeof records,
        'append at least one record',
      )
    }
    const fields = this.#manifest.schema.fields
    const names = fields.map((f) => f.name)
    records.forEach((record, i) => {
      if (typeof record !== 'object' || record === null || Array.isArray(record)) {
        throw new InvalidOptionError(
          `records[${i}]`,
          record === null ? 'null' : Array.isArray(record) ? 'an array' : typeof record,
          `a record is an object with a value for each of ${names.map((n) => `'${n}'`).join(', ')}`,
        )
      }
      for (const key of Object.keys(record)) {
        if (!names.includes(key)) throw new UnknownFieldError(key, names)
      }
      for (const name of names) {
        if (!(name in record))
          throw new InvalidOptionError(`records[${i}]`, Object.keys(record), `has no value for '${name}'`)
      }
    })
    const perBucket = options.bucketRecords ?? defaultBucketRecords(fields)
    const maxBytes = options.bucketBytes ?? 64 << 20
    if (!Number.isSafeInteger(perBucket) || perBucket < 1)
      throw new InvalidOptionError('bucketRecords', perBucket, 'must be an integer >= 1')
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1)
      throw new InvalidOptionError('bucketBytes', maxBytes, 'must be an integer >= 1')
    assertMessage(options.message)
    const groups = splitIntoBuckets(records, fields, perBucket, maxBytes)
    // Encode everything first: a bad value fails before anything is written.
    const codecs = await this.#codecs(options)
    const encoded = groups.map((group) =>
      encodeBucket(
        fields,
        Object.fromEntries(fields.map((f) => [f.name, group.map((r) => r[f.name])])),
        group.length,
        codecs,
      ),
    )
    const buckets: BucketInput[] = []
    const now = Date.now()
    for (const [g, group] of groups.entries()) {
      const objects = await putEncodedBucket(this.store, encoded[g]!, options)
      const start = await this.repository.mintAnchors(group.length, options)
      buckets.push({
        records: group.length,
        anchorRanges: [{ start, count: group.length }],
        timeMin: now,
        timeMax: now,
        fields: objects,
      })
    }
    const result = await this.repository.commit(
      ref,
      { kind: 'append', buckets },
      {
        ...options,
        ...(options.message ? { message: options.message } : {}),
      },
    )
    return await this.#moved(result.manifest, options)
  }

  /** Add (or extend) a scalar layer: values for the anchors given, nothing else written. */
  async addScalarLayer(
    name: string,
    parentField: string,
    kind: ScalarKind,
    samples: readonly Sample[],
    options: AbortOptions = {},
  ): Promise<string> {
    return await this.#addLayer({ name, family: 'scalar', kind } as Field, parentField, samples, options)
  }

  /** Add (or extend) an embedding layer, e.g. a student model's outputs. */
  async addEmbeddingLayer(init: EmbeddingLayerInit, options: AbortOptions = {}): Promise<string> {
    if (typeof init !== 'object' || init === null)
      throw new InvalidOptionError('init', init, 'is { name, parentField, dim, samples, ... }')
    const field: EmbeddingField = {
      name: init.name,
      family: 'embedding',
      dim: init.dim,
      metric: init.metric ?? (init.algorithm ? (ALGORITHMS[init.algorithm] ?? 'cosine') : 'cosine'),
      algorithm: init.algorithm ?? null,
      spatialIndex: asCid(init.spatialIndex, 'spatialIndex'),
      compressor: asCid(init.compressor, 'compressor'),
      rerank: init.rerank ?? false,
    }
    return await this.#addLayer(field, init.parentField, init.samples, options)
  }

  /**
   * Stream the records as Arrow record batches: `_anchor` plus one column per field. Only
   * the requested fields' objects are read, windows are fetched ahead with bounded
   * parallelism, and memory stays at a few windows whatever the dataset size.
   */
  iterArrowBatches(options: IterOptions = {}): BatchStream {
    const state = normalizeIterOptions(this.#manifest, this.currentManifest(), options)
    return iterate(this.repository, this.#manifest, state, {
      windowRecords: options.shuffleWindow ?? Math.max(4 * state.batchSize, 4096),
      prefetch: options.prefetch ?? 2,
      codecs: () => this.#codecs(options.signal ? { signal: options.signal } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    })
  }

  /**
   * The `k` records nearest to `query` under the field's metric. A compressed field is
   * searched through its IVF-RaBitQ index (built from the stored codes once per state, so
   * records appended since training are searchable without retraining); a plain float32
   * field is scanned exactly.
   */
  async search(
    fieldName: string,
    query: readonly number[] | Float32Array,
    options: SearchOptions,
  ): Promise<SearchHits> {
    const field = this.#manifest.schema.fields.find((f) => f.name === fieldName)
    const names = this.#manifest.schema.fields.map((f) => f.name)
    if (field === undefined) throw new UnknownFieldError(fieldName, names)
    if (field.family !== 'embedding')
      throw new InvalidOptionError('field', fieldName, `is a ${field.family} field, not an embedding`)
    const k = options?.k
    if (!Number.isSafeInteger(k) || k < 1) throw new InvalidOptionError('k', k, 'must be an integer >= 1')
    const allowed = await this.#filterAnchors(options.filter, options)
    const vectorsQuery = Array.from(query as ArrayLike<number>)
    if (!isCompressed(field)) return await this.#exactSearch(field, vectorsQuery, k, allowed, options)
    const index = await this.#searchIndex(field, options)
    const result = index.search(vectorsQuery, {
      k,
      ...(options.nprobe !== undefined ? { nprobe: options.nprobe } : {}),
      ...(options.rerank !== undefined ? { rerank: options.rerank } : {}),
      ...(allowed ? { filter: (id: bigint) => allowed.has(id) } : {}),
    })
    return { anchors: result.ids, distances: result.distances }
  }

  /**
   * Opt an existing embedding field into IVF + RaBitQ (or back to float32) without
   * re-ingesting: train (or reuse) a spatial index and a compressor, re-encode only that
   * field's objects, and commit the result as a new manifest. Snapshots taken before keep
   * their content; other fields are untouched.
   */
  async migrate(options: MigrateOptions): Promise<string> {
    const ref = this.#writableRef()
    const field = this.#manifest.schema.fields.find((f) => f.name === options?.field)
    if (field === undefined)
      throw new UnknownFieldError(
        String(options?.field),
        this.#manifest.schema.fields.map((f) => f.name),
      )
    if (field.family !== 'embedding')
      throw new InvalidOptionError('field', field.name, `is a ${field.family} field, not an embedding`)
    const { algorithm } = options
    if (algorithm !== null && !(algorithm in ALGORITHMS)) {
      throw new InvalidOptionError(
        'algorithm',
        algorithm,
        `must be one of ${Object.keys(ALGORITHMS).join(', ')} or null`,
      )
    }
    const rerank = algorithm === null ? false : (options.rerank ?? true)
    const bits = options.bits ?? 1
    if (!Number.isInteger(bits) || bits < 1 || bits > 8)
      throw new InvalidOptionError('bits', bits, 'must be an integer from 1 to 8')
    if (options.rerank !== undefined && typeof options.rerank !== 'boolean')
      throw new InvalidOptionError('rerank', options.rerank, 'must be a boolean')
    if (options.lists !== undefined && (!Number.isSafeInteger(options.lists) || options.lists < 1))
      throw new InvalidOptionError('lists', options.lists, 'must be an integer >= 1')
    const seed = options.seed ?? 0
    if (!Number.isSafeInteger(seed) || seed < 0 || seed > 0xffffffff)
      throw new InvalidOptionError('seed', seed, 'must be an integer from 0 to 4294967295')
    assertMessage(options.message)
    const spatialIndexCid = asCid(options.spatialIndex, 'spatialIndex')
    const compressorCid = asCid(options.compressor, 'compressor')
    if (algorithm === null && (spatialIndexCid !== null || compressorCid !== null)) {
      throw new InvalidOptionError(
        spatialIndexCid !== null ? 'spatialIndex' : 'compressor',
        String(spatialIndexCid ?? compressorCid),
        'plain float32 (algorithm null) uses no spatial index or compressor',
      )
    }
    const codecs = await this.#codecs(options)
    const exact = !isCompressed(field) || field.rerank
    if (rerank && !exact) {
      throw new InvalidOptionError(
        'rerank',
        true,
        `field '${field.name}' keeps no full vectors, only codes; re-ingest the vectors to enable rerank`,
      )
    }
    // Every bucket's vectors, in timeline order (exact where kept, else decoded from codes).
    const perBucket: Float32Array[] = []
    for await (const { bucket } of this.repository.buckets(this.#manifest, options)) {
      const column = (await readBucketColumns(this.store, [field], bucket, { ...options, codecs }))[
        field.name
      ]!
      perBucket.push(flatVectors(column, field.dim))
    }
    const metric = algorithm === null ? field.metric : ALGORITHMS[algorithm]!
    let next: EmbeddingField = { ...field, metric, algorithm, spatialIndex: null, compressor: null, rerank }
    const newCodecs = new Map<string, EmbeddingCodec>()
    if (algorithm !== null) {
      const all = new Float32Array(perBucket.reduce((n, v) => n + v.length, 0))
      let at = 0
      for (const v of perBucket) {
        all.set(v, at)
        at += v.length
      }
      const spatialIndex = spatialIndexCid
        ? await loadSpatialIndex(this.store, spatialIndexCid, options)
        : await trainSpatialIndex(all, {
            dim: field.dim,
            metric,
            ...(options.lists !== undefined ? { lists: options.lists } : {}),
            seed,
            ...(options.signal ? { signal: options.signal } : {}),
          })
      const compressor = compressorCid
        ? await loadCompressor(this.store, compressorCid, options)
        : createCompressor({ dim: field.dim, metric, bits, seed })
      // An operator's index or compressor for another dimension or metric is refused
      // before anything is saved.
      for (const [what, cid, object] of [
        ['spatialIndex', spatialIndexCid, spatialIndex],
        ['compressor', compressorCid, compressor],
      ] as const) {
        if (object.dim !== field.dim || object.metric !== metric) {
          throw new InvalidOptionError(
            what,
            String(cid),
            `is for dim ${object.dim} and metric '${object.metric}'; field '${field.name}' needs dim ${field.dim} and '${metric}'`,
          )
        }
      }
      next = {
        ...next,
        spatialIndex: await saveSpatialIndex(this.store, spatialIndex, options),
        compressor: await saveCompressor(this.store, compressor, options),
      }
      newCodecs.set(field.name, { spatialIndex, compressor })
    }
    const objects = []
    for (const vectors of perBucket) {
      const rows = Array.from({ length: vectors.length / field.dim }, (_, i) =>
        vectors.subarray(i * field.dim, (i + 1) * field.dim),
      )
      const encoded = encodeBucket([next], { [field.name]: rows }, rows.length, newCodecs)
      objects.push(await putEncodedBucket(this.store, encoded, options))
    }
    const result = await this.repository.commit(
      ref,
      { kind: 'migrate', field: next, objects },
      {
        ...options,
        ...(options.message ? { message: options.message } : {}),
      },
    )
    return await this.#moved(result.manifest, options)
  }

  async #searchIndex(field: EmbeddingField, options: AbortOptions): Promise<VectorIndex> {
    const key = `${this.currentManifest()}/${field.name}`
    let index = this.#searchIndexes.get(key)
    if (index === undefined) {
      index = (async () => {
        const codec = (await this.#codecs(options)).get(field.name)!
        const built = createVectorIndex({ ...codec, keepVectors: field.rerank })
        for await (const { bucket } of this.repository.buckets(this.#manifest, options)) {
          const block = await this.store.get(bucket.fields[field.name]!.cid, options)
          const vectors = field.rerank
            ? flatVectors(
                (await readBucketColumns(this.store, [field], bucket, options))[field.name]!,
                field.dim,
              )
            : undefined
          built.addCodes(block, { ids: anchorsOf(bucket), ...(vectors ? { vectors } : {}) })
        }
        return built
      })()
      index.catch(() => this.#searchIndexes.delete(key))
      this.#searchIndexes.set(key, index)
    }
    return await index
  }

  async #exactSearch(
    field: EmbeddingField,
    query: number[],
    k: number,
    allowed: Set<bigint> | undefined,
    options: AbortOptions,
  ): Promise<SearchHits> {
    if (query.length !== field.dim)
      throw new InvalidOptionError(
        'query',
        `${query.length} dimensions`,
        `field '${field.name}' has ${field.dim}`,
      )
    if (!query.every(Number.isFinite))
      throw new InvalidOptionError('query', 'a vector', 'has NaN or infinite components')
    const norm = Math.hypot(...query)
    if (field.metric === 'cosine' && norm === 0)
      throw new InvalidOptionError('query', 'the zero vector', 'has no direction under cosine')
    const hits: { anchor: bigint; distance: number }[] = []
    for await (const batch of this.iterArrowBatches({ fields: [field.name], batchSize: 4096, ...options })) {
      const anchors = batch.getChild('_anchor')!.toArray() as BigUint64Array
      const values = flatVectors(batch.getChild(field.name)!, field.dim)
      for (let r = 0; r < batch.numRows; r++) {
        if (allowed && !allowed.has(anchors[r]!)) continue
        let dot = 0
        let l2 = 0
        let vnorm = 0
        for (let d = 0; d < field.dim; d++) {
          const x = values[r * field.dim + d]!
          dot += x * query[d]!
          l2 += (x - query[d]!) ** 2
          vnorm += x * x
        }
        const distance =
          field.metric === 'l2' ? l2 : field.metric === 'ip' ? -dot : 1 - dot / (Math.sqrt(vnorm) * norm || 1)
        hits.push({ anchor: anchors[r]!, distance })
      }
    }
    hits.sort((a, b) => a.distance - b.distance)
    const top = hits.slice(0, k)
    return {
      anchors: BigUint64Array.from(top.map((h) => h.anchor)),
      distances: Float32Array.from(top.map((h) => h.distance)),
    }
  }

  /** Anchors whose scalar fields equal the filter's values, or undefined for no filter. */
  async #filterAnchors(
    filter: SearchOptions['filter'],
    options: AbortOptions,
  ): Promise<Set<bigint> | undefined> {
    if (filter === undefined) return undefined
    const names = Object.keys(filter)
    for (const name of names) {
      const field = this.#manifest.schema.fields.find((f) => f.name === name)
      if (field === undefined || field.family !== 'scalar') {
        throw new InvalidOptionError('filter', name, 'filters compare scalar fields of the dataset')
      }
    }
    const allowed = new Set<bigint>()
    for await (const batch of this.iterArrowBatches({ fields: names, batchSize: 8192, ...options })) {
      const anchors = batch.getChild('_anchor')!.toArray() as BigUint64Array
      const columns = names.map((n) => batch.getChild(n)!)
      for (let r = 0; r < batch.numRows; r++) {
        if (names.every((n, c) => columns[c]!.get(r) === filter[n])) allowed.add(anchors[r]!)
      }
    }
    return allowed
  }

  /**
   * Merge runs of small consecutive buckets (many tiny appends) into buckets of about
   * `targetRecords`, so iteration reads a few large objects instead of many small ones.
   * Every record keeps its anchor, position and values; snapshots keep their buckets. One
   * commit per merged run, from the end of the timeline backwards. A merged bucket's time
   * range covers all its appends, so `timeRange` then resolves to the merged bucket.
   * Returns the new manifest, or `undefined` when nothing was small enough to merge.
   */
  async compact(options: CompactOptions = {}): Promise<string | undefined> {
    const ref = this.#writableRef()
    const target = options.targetRecords ?? defaultBucketRecords(this.#manifest.schema.fields)
    if (!Number.isSafeInteger(target) || target < 2)
      throw new InvalidOptionError('targetRecords', target, 'must be >= 2')
    const fields = this.#manifest.schema.fields
    const lossy = fields.find((f) => f.family === 'embedding' && isCompressed(f) && !f.rerank)
    if (lossy !== undefined) {
      throw new InvalidOptionError(
        'compact',
        lossy.name,
        'keeps only codes; merging would re-encode approximations, so it is not compacted',
      )
    }
    // Runs of consecutive buckets that fit in one target-sized bucket, two or more each.
    const runs: { start: number; buckets: Bucket[] }[] = []
    let current: { start: number; buckets: Bucket[]; records: number } | undefined
    for await (const { position, bucket } of this.repository.buckets(this.#manifest, options)) {
      if (current !== undefined && current.records + bucket.records <= target) {
        current.buckets.push(bucket)
        current.records += bucket.records
        continue
      }
      if (current !== undefined && current.buckets.length > 1) runs.push(current)
      current = { start: position, buckets: [bucket], records: bucket.records }
    }
    if (current !== undefined && current.buckets.length > 1) runs.push(current)
    if (runs.length === 0) return undefined
    const codecs = await this.#codecs(options)
    for (const run of runs.reverse()) {
      const columns: Record<string, unknown[]> = Object.fromEntries(fields.map((f) => [f.name, []]))
      for (const bucket of run.buckets) {
        const decoded = await readBucketColumns(this.store, fields, bucket, { ...options, codecs })
        for (const field of fields) {
          const column = decoded[field.name]
          for (let i = 0; i < bucket.records; i++) {
            const value = column?.get(i) ?? null
            columns[field.name]!.push(
              field.family === 'embedding' && value !== null
                ? Float32Array.from(value as Iterable<number>)
                : value,
            )
          }
        }
      }
      const records = run.buckets.reduce((n, b) => n + b.records, 0)
      const objects = await putEncodedBucket(
        this.store,
        encodeBucket(fields, columns, records, codecs),
        options,
      )
      const result = await this.repository.commit(
        ref,
        {
          kind: 'compact',
          start: run.start,
          count: run.buckets.length,
          replacement: [
            {
              records,
              anchorRanges: run.buckets.flatMap((b) => b.anchorRanges ?? []),
              timeMin: Math.min(...run.buckets.map((b) => b.timeMin)),
              timeMax: Math.max(...run.buckets.map((b) => b.timeMax)),
              fields: objects,
            },
          ],
        },
        options,
      )
      await this.#moved(result.manifest, options)
    }
    return this.currentManifest()
  }

  async #addLayer(
    input: Field,
    parentField: string,
    samples: readonly Sample[],
    options: AbortOptions,
  ): Promise<string> {
    const ref = this.#writableRef()
    const known = [
      ...this.#manifest.schema.fields.map((f) => f.name),
      ...this.#manifest.layers.map((l) => l.name),
    ]
    if (!known.includes(parentField)) throw new UnknownFieldError(parentField, known)
    // The definition against this state (name, kind, dim, metric, a clash with a base field,
    // a layer re-added with another definition), before any object is written.
    const field = checkLayer(this.#manifest, { name: input.name, parent: parentField, field: input })
    if (field.family === 'embedding') {
      if (field.algorithm !== null && !(field.algorithm in ALGORITHMS)) {
        throw new InvalidOptionError(
          'algorithm',
          field.algorithm,
          `must be one of ${Object.keys(ALGORITHMS).join(', ')} or null`,
        )
      }
      const compressed = field.spatialIndex !== null || field.compressor !== null
      if (
        compressed &&
        (field.algorithm === null || field.spatialIndex === null || field.compressor === null)
      ) {
        throw new InvalidOptionError(
          field.algorithm === null
            ? 'algorithm'
            : field.spatialIndex === null
              ? 'spatialIndex'
              : 'compressor',
          String(field.algorithm ?? field.spatialIndex ?? field.compressor),
          'a compressed embedding layer names its algorithm, spatial index and compressor (from trainEmbeddingCodec)',
        )
      }
      if (field.algorithm !== null && ALGORITHMS[field.algorithm] !== field.metric) {
        throw new InvalidOptionError(
          'metric',
          field.metric,
          `algorithm '${field.algorithm}' means metric '${ALGORITHMS[field.algorithm]}'`,
        )
      }
    }
    if (!Array.isArray(samples) || samples.length === 0) {
      throw new InvalidSampleError(field.name, 0, 'a layer needs at least one sample')
    }
    const anchors: bigint[] = []
    const seen = new Set<bigint>()
    samples.forEach((sample, i) => {
      const raw = sample?.[0]
      const anchor = typeof raw === 'number' && Number.isSafeInteger(raw) ? BigInt(raw) : raw
      if (typeof anchor !== 'bigint' || anchor < 0n)
        throw new InvalidSampleError(field.name, i, `anchor ${String(raw)} is not a uint64`)
      if (seen.has(anchor)) throw new InvalidSampleError(field.name, i, `anchor ${anchor} appears twice`)
      seen.add(anchor)
      anchors.push(anchor)
    })
    const ranges = await this.#anchorRanges(options)
    anchors.forEach((anchor, i) => {
      if (!contains(ranges, anchor)) {
        throw new InvalidSampleError(field.name, i, `anchor ${anchor} is not a record of this dataset`)
      }
    })
    // A compressed layer's codec is loaded (and checked against its dim and metric) and its
    // values validated by their encoding, before the segment is stored.
    const codecs = await loadCodecs(this.store, [field], this.#codecCache, options)
    const segment = await writeLayerSegment(
      this.store,
      field,
      anchors,
      samples.map((s) => s[1]),
      { ...options, codecs },
    )
    const result = await this.repository.commit(
      ref,
      { kind: 'layer', name: field.name, parent: parentField, field, segments: [segment] },
      options,
    )
    return await this.#moved(result.manifest, options)
  }

  /** Sorted anchor ranges of every record (metadata only). */
  async #anchorRanges(options: AbortOptions): Promise<[bigint, bigint][]> {
    const ranges: [bigint, bigint][] = []
    for await (const { bucket } of this.repository.buckets(this.#manifest, options)) {
      for (const r of bucket.anchorRanges ?? []) ranges.push([r.start, r.start + BigInt(r.count)])
    }
    return ranges.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  }

  /** The codecs of this state's compressed embedding fields, loaded once per CID pair. */
  async #codecs(options: AbortOptions = {}): Promise<Codecs> {
    const fields = [...this.#manifest.schema.fields, ...this.#manifest.layers.map((l) => l.field)]
    return await loadCodecs(this.store, fields, this.#codecCache, options)
  }

  #writableRef(): string {
    if (this.ref === null) throw new ReadOnlyDatasetError(this.currentManifest())
    return this.ref
  }

  async #moved(cid: CID, options: AbortOptions): Promise<string> {
    this.#manifestCid = cid
    this.#manifest = await this.repository.loadManifest(cid, options)
    return cid.toString()
  }
}

/**
 * The vectors of a FixedSizeList<Float32> column as one row-major array: exactly
 * `length * dim` values, without the padding Arrow may leave after the child buffer.
 */
function flatVectors(column: Vector, dim: number): Float32Array {
  const data = column.data[0]!
  const child = data.children[0]!
  const start = child.offset + data.offset * dim
  return (child.values as Float32Array).subarray(start, start + column.length * dim)
}

/** A commit message is a string when given. */
function assertMessage(message: unknown): void {
  if (message !== undefined && typeof message !== 'string')
    throw new InvalidOptionError('message', message, 'must be a string')
}

function isCidString(value: string): boolean {
  try {
    CID.parse(value)
    return true
  } catch {
    return false
  }
}

function contains(ranges: [bigint, bigint][], anchor: bigint): boolean {
  let lo = 0
  let hi = ranges.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const [start, end] = ranges[mid]!
    if (anchor < start) hi = mid - 1
    else if (anchor >= end) lo = mid + 1
    else return true
  }
  return false
}

/** Bytes of fixed-width values a default bucket aims at. */
const BUCKET_TARGET_BYTES = 16 << 20

/**
 * Records per bucket when the caller does not say: as many as keep the embeddings near 16
 * MiB, a power of two so that common batch sizes tile a bucket (an in-order batch inside
 * one bucket is handed out without a copy), from 1 024 (metadata per record stays small) to
 * 8 192 (a shuffled first batch reads little). Binary values are bounded by `bucketBytes`.
 */
function defaultBucketRecords(fields: readonly Field[]): number {
  const bytesPerRecord = fields.reduce((sum, f) => sum + (f.family === 'embedding' ? f.dim * 4 : 0), 0)
  let records = 8192
  while (records > 1024 && records * bytesPerRecord > BUCKET_TARGET_BYTES) records /= 2
  return records
}

function splitIntoBuckets(
  records: readonly DatasetRecord[],
  fields: readonly Field[],
  perBucket: number,
  maxBytes: number,
): DatasetRecord[][] {
  const binary = fields.filter((f) => f.family === 'binary').map((f) => f.name)
  const groups: DatasetRecord[][] = []
  let current: DatasetRecord[] = []
  let bytes = 0
  for (const record of records) {
    const size = binary.reduce(
      (sum, name) => sum + ((record[name] as Uint8Array | undefined)?.byteLength ?? 0),
      0,
    )
    if (current.length > 0 && (current.length >= perBucket || bytes + size > maxBytes)) {
      groups.push(current)
      current = []
      bytes = 0
    }
    current.push(record)
    bytes += size
  }
  if (current.length > 0) groups.push(current)
  return groups
}
