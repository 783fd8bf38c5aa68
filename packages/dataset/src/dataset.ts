import type { Codecs, EmbeddingCodec } from '@dreamdb/arrow'
import { type AbortOptions, openStore, type Store } from '@dreamdb/cas'
import {
  assertUserRefName,
  type Field,
  type FieldInput,
  type Manifest,
  RefExistsError,
  Repository,
  type ScalarKind,
  type SnapshotInfo,
} from '@dreamdb/manifest'
import { LRUCache } from 'lru-cache'
import { CID } from 'multiformats/cid'
import { type AppendOptions, appendMany, type DatasetRecord } from './append.js'
import { loadCodecs } from './codecs.js'
import { type CompactOptions, compact } from './compact.js'
import { ReadOnlyDatasetError } from './errors.js'
import { addFields, dropField, type FieldChangeOptions } from './fields.js'
import type { DatasetInternals } from './internal.js'
import { type BatchStream, type IterOptions, iterate, normalizeIterOptions } from './iterate.js'
import {
  addEmbeddingLayer,
  addScalarLayer,
  type DropLayerOptions,
  dropLayer,
  type EmbeddingLayerInit,
  type Sample,
} from './layers.js'
import { type MergeOptions, merge } from './merge.js'
import { type MigrateOptions, migrate } from './migrate.js'
import { type RestoreOptions, restore } from './restore.js'
import {
  createSearchIndexes,
  type SearchHits,
  type SearchIndexes,
  type SearchManyHits,
  type SearchOptions,
  type SearchQueries,
  search,
  searchMany,
} from './search.js'

/** Where a dataset lives: a backend URL (a folder by default) or an open store. */
export interface BackendOptions extends AbortOptions {
  backend: string | Store
}

/**
 * Codec pairs a dataset keeps loaded. A state needs one per compressed embedding field or
 * layer; more than that only after migrations, whose older pairs are rarely read again.
 */
const CODEC_CACHE_ENTRIES = 16

/**
 * One `Repository` per open store, so datasets opened on the same store share its anchor
 * minting and manifest reads. Weak: it lives as long as the store does.
 */
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

/**
 * A dataset at one ref (a branch you can write to) or at one pinned state (a snapshot or
 * manifest, read-only). Every write returns the new manifest's CID.
 *
 * This class holds the state (which manifest it reads, which branch it writes) and the
 * open/snapshot/branch verbs; each change kind and search live in their own module
 * (`append.ts`, `layers.ts`, `migrate.ts`, `compact.ts`, `search.ts`), reached through
 * `#internals`.
 */
export class Dataset {
  readonly repository: Repository
  /** The branch this dataset writes to, or `null` when opened at a pinned state. */
  readonly ref: string | null
  #manifestCid: CID
  #manifest: Manifest
  /**
   * Loaded spatial indexes and compressors, by `spatialIndex/compressor` CIDs, at most
   * `CODEC_CACHE_ENTRIES`, least recently used dropped first (a dropped pair is loaded again
   * when next needed: two reads).
   */
  readonly #codecCache = new LRUCache<string, Promise<EmbeddingCodec>>({ max: CODEC_CACHE_ENTRIES })
  /** Search indexes: one per field, at the state last searched (see `createSearchIndexes`). */
  readonly #searchIndexes: SearchIndexes = createSearchIndexes()
  /** What the verbs' modules may do to this dataset's private state. */
  readonly #internals: DatasetInternals = {
    codecs: (options, fields) => this.#codecs(options, fields),
    writableRef: () => this.#writableRef(),
    moved: (cid, options) => this.#moved(cid, options),
  }

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
    const resolved = await repo.resolve(sourceOf(at), options)
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
    return await appendMany(this, this.#internals, records, options)
  }

  /** Add (or extend) a scalar layer: values for the anchors given, nothing else written. */
  async addScalarLayer(
    name: string,
    parentField: string,
    kind: ScalarKind,
    samples: readonly Sample[],
    options: AbortOptions = {},
  ): Promise<string> {
    return await addScalarLayer(this, this.#internals, name, parentField, kind, samples, options)
  }

  /** Add (or extend) an embedding layer, e.g. a student model's outputs. */
  async addEmbeddingLayer(init: EmbeddingLayerInit, options: AbortOptions = {}): Promise<string> {
    return await addEmbeddingLayer(this, this.#internals, init, options)
  }

  /**
   * Remove a layer from this branch (a sweep run's predictions that lost): one small commit.
   * Snapshots and the history keep it, and its objects stay until nothing reaches them (GC).
   * A layer another layer derives from is refused until that one is dropped.
   */
  async dropLayer(name: string, options: DropLayerOptions = {}): Promise<string> {
    return await dropLayer(this, this.#internals, name, options)
  }

  /**
   * Remove a base field from this branch (image bytes no longer needed once embeddings are
   * computed, a column that should not be there): one commit whose schema and buckets no
   * longer name it, writing tree nodes only. Snapshots, the history and other branches keep
   * it, and its objects stay until nothing reaches them (GC). The last base field, and one a
   * layer derives from, are refused. The name may be given to a new field later.
   */
  async dropField(name: string, options: FieldChangeOptions = {}): Promise<string> {
    return await dropField(this, this.#internals, name, options)
  }

  /**
   * Bring back the state of `from` (a snapshot, a ref name or a manifest CID; usually one of
   * this branch's past states, to take back an append) in one commit. The history keeps every
   * commit, the ones restored over included. Decided on the state this dataset shows: a
   * commit on the branch since then is a conflict rather than restored over unseen. Already
   * at that state: no commit.
   */
  async restore(from: SnapshotInfo | string | CID, options: RestoreOptions = {}): Promise<string> {
    return await restore(this, this.#internals, sourceOf(from), options)
  }

  /**
   * Merge another branch (or any state sharing history with this one) into this branch, in
   * one commit with two parents: its records appended since the two branches diverged come
   * after this branch's, and its layers written or dropped since are taken. Refused, with
   * nothing written, when the other side did more than append and write layers since they
   * diverged, or when both sides changed the same layer (ERR_DATASET_MERGE_CONFLICT).
   * Already merged: no commit. Returns the branch's manifest.
   */
  async merge(from: SnapshotInfo | string | CID, options: MergeOptions = {}): Promise<string> {
    return await merge(this, this.#internals, sourceOf(from), options)
  }

  /**
   * Add base fields to this branch in one small commit (a caption column from now on).
   * Records appended before read them as nulls; values for them are a layer's job. A bad
   * definition, or a name a field or layer already has, is refused before anything is written.
   */
  async addFields(fields: readonly FieldInput[], options: FieldChangeOptions = {}): Promise<string> {
    return await addFields(this, this.#internals, fields, options)
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
      recycleBuffers: options.recycleBuffers,
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
    return await search(this, this.#internals, this.#searchIndexes, fieldName, query, options)
  }

  /** `search` for many queries at once: row i of the result answers query i. */
  async searchMany(
    fieldName: string,
    queries: SearchQueries,
    options: SearchOptions,
  ): Promise<SearchManyHits> {
    return await searchMany(this, this.#internals, this.#searchIndexes, fieldName, queries, options)
  }

  /**
   * Opt an existing embedding field into IVF + RaBitQ (or back to float32) without
   * re-ingesting: train (or reuse) a spatial index and a compressor, re-encode only that
   * field's objects, and commit the result as a new manifest. Snapshots taken before keep
   * their content; other fields are untouched.
   */
  async migrate(options: MigrateOptions): Promise<string> {
    return await migrate(this, this.#internals, options)
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
    return await compact(this, this.#internals, options)
  }

  /**
   * The codecs of the compressed embedding fields among `fields` (this state's fields and
   * layers by default), loaded once per CID pair.
   */
  async #codecs(options: AbortOptions = {}, fields?: readonly Field[]): Promise<Codecs> {
    const wanted = fields ?? [...this.#manifest.schema.fields, ...this.#manifest.layers.map((l) => l.field)]
    return await loadCodecs(this.store, wanted, this.#codecCache, options)
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

/** A snapshot, a ref name or a manifest CID (object or string), as the repository resolves it. */
function sourceOf(at: SnapshotInfo | string | CID): string | CID {
  if (typeof at === 'object' && at !== null && 'label' in at) return CID.parse(at.manifest)
  return CID.asCID(at) ?? (isCidString(at as string) ? CID.parse(at as string) : (at as string))
}

function isCidString(value: string): boolean {
  try {
    CID.parse(value)
    return true
  } catch {
    return false
  }
}
