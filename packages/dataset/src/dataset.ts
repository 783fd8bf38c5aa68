import { encodeBucket, putEncodedBucket, writeLayerSegment } from '@dreamdb/arrow'
import { type AbortOptions, openStore, type Store } from '@dreamdb/cas'
import {
  type BucketInput,
  type EmbeddingField,
  type Field,
  type FieldInput,
  type Manifest,
  Repository,
  type Repository as RepositoryType,
  type ScalarKind,
  type SnapshotInfo,
} from '@dreamdb/manifest'
import { CID } from 'multiformats/cid'
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
  /** Records per bucket (one object per field per bucket). @default 1024 */
  bucketRecords?: number
  /** Bytes of binary values per bucket, at most. @default 64 MiB */
  bucketBytes?: number
  message?: string
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
  metric?: 'cosine' | 'l2' | 'ip'
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
  readonly repository: RepositoryType
  /** The branch this dataset writes to, or `null` when opened at a pinned state. */
  readonly ref: string | null
  #manifestCid: CID
  #manifest: Manifest

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
    return new Dataset(this.repository as Repository, name, this.#manifestCid, this.#manifest)
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
      for (const key of Object.keys(record)) {
        if (!names.includes(key)) throw new UnknownFieldError(key, names)
      }
      for (const name of names) {
        if (!(name in record))
          throw new InvalidOptionError(`records[${i}]`, Object.keys(record), `has no value for '${name}'`)
      }
    })
    const perBucket = options.bucketRecords ?? 1024
    const maxBytes = options.bucketBytes ?? 64 << 20
    if (!Number.isSafeInteger(perBucket) || perBucket < 1)
      throw new InvalidOptionError('bucketRecords', perBucket, 'must be >= 1')
    const groups = splitIntoBuckets(records, fields, perBucket, maxBytes)
    // Encode everything first: a bad value fails before anything is written.
    const encoded = groups.map((group) =>
      encodeBucket(
        fields,
        Object.fromEntries(fields.map((f) => [f.name, group.map((r) => r[f.name])])),
        group.length,
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
    const field: EmbeddingField = {
      name: init.name,
      family: 'embedding',
      dim: init.dim,
      metric: init.metric ?? 'cosine',
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
    return iterate(this.repository as Repository, this.#manifest, state, {
      windowRecords: options.shuffleWindow ?? Math.max(4 * state.batchSize, 4096),
      prefetch: options.prefetch ?? 2,
      ...(options.signal ? { signal: options.signal } : {}),
    })
  }

  async #addLayer(
    field: Field,
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
    // Values are validated by their encoding, before the segment is stored.
    const segment = await writeLayerSegment(
      this.store,
      field,
      anchors,
      samples.map((s) => s[1]),
      options,
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
