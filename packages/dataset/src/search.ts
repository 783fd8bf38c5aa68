import {
  anchorsOf,
  type EmbeddingCodec,
  isCompressed,
  readBucketColumns,
  readLayerSegment,
} from '@dreamdb/arrow'
import { type AbortOptions, BufferPool, type ReadBuffers } from '@dreamdb/cas'
import type { Bucket, EmbeddingField, Layer, Manifest } from '@dreamdb/manifest'
import {
  createExactScan,
  createVectorIndex,
  type ExactScan,
  type SearchOptions as IndexSearchOptions,
  listSizesOfCodes,
  type VectorIndex,
} from '@dreamdb/vector'
import { tableFromIPC } from 'apache-arrow'
import { LRUCache } from 'lru-cache'
import type { CID } from 'multiformats/cid'
import type { Dataset } from './dataset.js'
import { InvalidOptionError, UnknownFieldError } from './errors.js'
import { type DatasetInternals, flatVectors } from './internal.js'

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

/**
 * A dataset's search indexes, built from stored codes, by field name: each at the state
 * (manifest CID) it was last searched at. Searching the field at another state (after an
 * append, a migrate or a refresh) builds that state's index and drops the old one, so an
 * append-and-search loop holds one index per field, not one per state.
 */
export type SearchIndexes = LRUCache<
  string,
  { manifest: string; index: Promise<BuiltIndex>; built?: BuiltIndex }
>

/**
 * At most this many fields' indexes per dataset, least recently searched dropped first. An
 * index holds every code of its field, and its full vectors when it reranks, so the bound
 * is small: a dataset is rarely searched on more than a couple of embedding fields.
 */
export const SEARCH_INDEX_FIELDS = 4

export function createSearchIndexes(): SearchIndexes {
  return new LRUCache({ max: SEARCH_INDEX_FIELDS })
}

/** `Dataset.searchMany`: row i (k entries, closest first) answers query i. */
export interface SearchManyHits {
  /** queries x k anchors, row-major; past `counts[i]` a row holds 0. */
  anchors: BigUint64Array
  /** queries x k distances, row-major; past `counts[i]` a row holds +Infinity. */
  distances: Float32Array
  /** Records found per query: k unless the dataset (or the filter) leaves fewer. */
  counts: Uint32Array
}

/** Queries for `searchMany`: one flat row-major `Float32Array`, or a list of vectors. */
export type SearchQueries = Float32Array | readonly (readonly number[] | Float32Array)[]

/**
 * `Dataset.search`: the `k` records nearest to `query` under the field's metric, through
 * the field's IVF-RaBitQ index when it is compressed, by an exact scan when it is float32.
 */
export async function search(
  ds: Dataset,
  internals: DatasetInternals,
  indexes: SearchIndexes,
  fieldName: string,
  query: readonly number[] | Float32Array,
  options: SearchOptions,
): Promise<SearchHits> {
  const { field, layer, k } = resolveField(ds, fieldName, options)
  // No awaits on the common path (no filter, index built): a search costs the index's search.
  const allowed = options.filter === undefined ? undefined : await filterAnchors(ds, options.filter, options)
  if (!isCompressed(field)) {
    const [scan] = await exactSearch(ds, field, layer, [query], k, allowed, options)
    const { ids, distances } = scan!.result()
    return { anchors: ids, distances }
  }
  const built =
    builtIndex(ds, indexes, field) ?? (await searchIndex(ds, internals, indexes, field, layer, options))
  // The query goes to the index as given: it checks and converts it once (no Array.from here).
  const result = built.index.search(query, indexOptions(built, k, allowed, options))
  const anchors =
    built.anchorOf === undefined ? result.ids : result.ids.map((id) => built.anchorOf![Number(id)]!)
  return { anchors, distances: result.distances }
}

/**
 * `Dataset.searchMany`: `search` for every query at once. A compressed field's index checks
 * the options and sets up its working memory once for all queries; a float32 field is read
 * once for all of them.
 */
export async function searchMany(
  ds: Dataset,
  internals: DatasetInternals,
  indexes: SearchIndexes,
  fieldName: string,
  queries: SearchQueries,
  options: SearchOptions,
): Promise<SearchManyHits> {
  const { field, layer, k } = resolveField(ds, fieldName, options)
  const allowed = options.filter === undefined ? undefined : await filterAnchors(ds, options.filter, options)
  if (!isCompressed(field)) {
    const rows = queryRows(queries, field.dim)
    const scans = await exactSearch(ds, field, layer, rows, k, allowed, options)
    const anchors = new BigUint64Array(rows.length * k)
    const distances = new Float32Array(rows.length * k).fill(Number.POSITIVE_INFINITY)
    const counts = new Uint32Array(rows.length)
    scans.forEach((scan, i) => {
      const hits = scan.result()
      anchors.set(hits.ids, i * k)
      distances.set(hits.distances, i * k)
      counts[i] = hits.ids.length
    })
    return { anchors, distances, counts }
  }
  const built =
    builtIndex(ds, indexes, field) ?? (await searchIndex(ds, internals, indexes, field, layer, options))
  const result = built.index.searchMany(queries, indexOptions(built, k, allowed, options))
  const anchors = result.ids
  if (built.anchorOf !== undefined) {
    for (let i = 0; i < result.counts.length; i++) {
      for (let j = 0; j < result.counts[i]!; j++)
        anchors[i * k + j] = built.anchorOf[Number(anchors[i * k + j])]!
    }
  }
  return { anchors, distances: result.distances, counts: result.counts }
}

/** The searched field (a base field or a layer) and k, checked. */
function resolveField(
  ds: Dataset,
  fieldName: string,
  options: SearchOptions,
): { field: EmbeddingField; layer: Layer | undefined; k: number } {
  const { fields } = ds.manifest.schema
  const layer = ds.manifest.layers.find((l) => l.name === fieldName)
  const field = fields.find((f) => f.name === fieldName) ?? layer?.field
  if (field === undefined)
    throw new UnknownFieldError(fieldName, [
      ...fields.map((f) => f.name),
      ...ds.manifest.layers.map((l) => l.name),
    ])
  if (field.family !== 'embedding')
    throw new InvalidOptionError('field', fieldName, `is a ${field.family} field, not an embedding`)
  const k = options?.k
  if (!Number.isSafeInteger(k) || k < 1) throw new InvalidOptionError('k', k, 'must be an integer >= 1')
  return { field, layer, k }
}

/** The field's index at this state when it is already built, without waiting for anything. */
function builtIndex(ds: Dataset, indexes: SearchIndexes, field: EmbeddingField): BuiltIndex | undefined {
  const cached = indexes.get(field.name)
  return cached?.manifest === ds.currentManifest() ? cached.built : undefined
}

/** The index's search options: a layer's stale rows and the filter's anchors as one filter. */
function indexOptions(
  built: BuiltIndex,
  k: number,
  allowed: Set<bigint> | undefined,
  options: SearchOptions,
): IndexSearchOptions {
  const { anchorOf } = built
  // A layer's anchor given again in a later segment has its older rows searched as ids that
  // `anchorOf` marks stale (so the filter drops them); base fields' ids are their anchors.
  const keep =
    anchorOf === undefined
      ? allowed && ((id: bigint) => allowed.has(id))
      : (id: bigint) => {
          const anchor = anchorOf[Number(id)]!
          return anchor !== STALE && (allowed === undefined || allowed.has(anchor))
        }
  return {
    k,
    ...(options.nprobe !== undefined ? { nprobe: options.nprobe } : {}),
    ...(options.rerank !== undefined ? { rerank: options.rerank } : {}),
    ...(keep ? { filter: keep } : {}),
  }
}

/** Queries as rows of `dim` values (views, not copies). */
function queryRows(queries: SearchQueries, dim: number): (readonly number[] | Float32Array)[] {
  if (queries instanceof Float32Array) {
    if (queries.length % dim !== 0)
      throw new InvalidOptionError('queries', `${queries.length} values`, `is not a multiple of dim ${dim}`)
    return Array.from({ length: queries.length / dim }, (_, i) => queries.subarray(i * dim, (i + 1) * dim))
  }
  if (!Array.isArray(queries))
    throw new InvalidOptionError('queries', typeof queries, 'must be a Float32Array or an array of vectors')
  return [...queries]
}

/** Marks a layer row whose anchor a later segment gives again (only the latest value counts). */
const STALE = 0xffffffffffffffffn

/** A built index; `anchorOf` maps its ids (row numbers) to anchors where a layer repeats anchors. */
interface BuiltIndex {
  index: VectorIndex
  anchorOf?: BigUint64Array
}

/** A layer's segments, in order, each with its anchors. */
async function* layerSegments(
  ds: Dataset,
  layer: Layer,
  options: AbortOptions,
): AsyncGenerator<{ segment: Bucket; anchors: BigUint64Array }> {
  if (layer.segments === null) return
  for await (const { bucket } of ds.repository.buckets({ timeline: layer.segments } as Manifest, options)) {
    const part = bucket.fields[`${layer.name}/anchors`]
    const anchors = part
      ? (tableFromIPC(await ds.store.get(part.cid, options))
          .getChild('_anchor')!
          .toArray() as BigUint64Array)
      : (await readLayerSegment(ds.store, layer.field, bucket, options)).anchors
    yield { segment: bucket, anchors }
  }
}

/** Row numbers (over all segments) of rows a later segment overrides, or an empty set. */
function staleRows(anchorLists: readonly BigUint64Array[]): Set<number> {
  const latest = new Map<bigint, number>()
  const stale = new Set<number>()
  let row = 0
  for (const anchors of anchorLists) {
    for (const anchor of anchors) {
      const before = latest.get(anchor)
      if (before !== undefined) stale.add(before)
      latest.set(anchor, row++)
    }
  }
  return stale
}

/**
 * The field's index at this state, built from the stored codes (and the kept full vectors
 * when the field reranks) once per state, so records appended since training are
 * searchable without retraining.
 */
async function searchIndex(
  ds: Dataset,
  internals: DatasetInternals,
  indexes: SearchIndexes,
  field: EmbeddingField,
  layer: Layer | undefined,
  options: AbortOptions,
): Promise<BuiltIndex> {
  const manifestCid = ds.currentManifest()
  const cached = indexes.get(field.name)
  if (cached?.manifest === manifestCid) return await cached.index
  const manifest = ds.manifest
  const index = (async (): Promise<BuiltIndex> => {
    const codec = (await internals.codecs(options, [field])).get(field.name)!
    if (layer === undefined) {
      const parts: IndexPart[] = []
      for await (const { bucket } of ds.repository.buckets(manifest, options)) {
        parts.push({
          codes: bucket.fields[field.name]!.cid,
          ids: anchorsOf(bucket),
          vectors: async (buffers) =>
            flatVectors(
              (await readBucketColumns(ds.store, [field], bucket, { ...options, buffers }))[field.name]!,
              field.dim,
            ),
        })
      }
      return { index: await indexOf(ds, codec, field, parts, options) }
    }
    const segments: { segment: Bucket; anchors: BigUint64Array }[] = []
    for await (const s of layerSegments(ds, layer, options)) segments.push(s)
    const stale = staleRows(segments.map((s) => s.anchors))
    const rows = segments.reduce((n, s) => n + s.anchors.length, 0)
    const anchorOf = stale.size > 0 ? new BigUint64Array(rows) : undefined
    let row = 0
    const parts = segments.map(({ segment, anchors }): IndexPart => {
      let ids = anchors
      if (anchorOf !== undefined) {
        ids = new BigUint64Array(anchors.length)
        for (let i = 0; i < anchors.length; i++, row++) {
          ids[i] = BigInt(row)
          anchorOf[row] = stale.has(row) ? STALE : anchors[i]!
        }
      }
      return {
        codes: segment.fields[field.name]!.cid,
        ids,
        vectors: async () =>
          flatVectors((await readLayerSegment(ds.store, field, segment, options)).values, field.dim),
      }
    })
    const built = await indexOf(ds, codec, field, parts, options)
    return anchorOf === undefined ? { index: built } : { index: built, anchorOf }
  })()
  const entry: { manifest: string; index: Promise<BuiltIndex>; built?: BuiltIndex } = {
    manifest: manifestCid,
    index,
  }
  index.then(
    (built) => {
      entry.built = built
    },
    () => {},
  )
  // A failed build (an abort, a read error) is not kept: the next search builds again.
  index.catch(() => {
    if (indexes.peek(field.name) === entry) indexes.delete(field.name)
  })
  indexes.set(field.name, entry)
  return await index
}

/** One stored code block of an index, its ids, and how to read its full vectors. */
interface IndexPart {
  codes: CID
  ids: BigUint64Array
  /** `buffers`: where the read may take its buffer from and report it (base fields use it). */
  vectors: (buffers: ReadBuffers) => Promise<Float32Array>
}

/**
 * An index over stored code blocks: the blocks first (small: 1/27 of the float32 vectors at
 * 1 bit), so every list is sized once from their list columns instead of growing block by
 * block; then, when the field reranks, each block's full vectors, the next blocks' reads
 * (verified off the main thread by the store) in flight while this one is inserted.
 */
async function indexOf(
  ds: Dataset,
  codec: EmbeddingCodec,
  field: EmbeddingField,
  parts: readonly IndexPart[],
  options: AbortOptions,
): Promise<VectorIndex> {
  // Each block's vectors are copied into the index at once, so their read buffers go back to
  // a pool for the reads ahead: a few large buffers for the whole build instead of one per
  // bucket for the garbage collector (it took a tenth of the build's main thread).
  const pool = new BufferPool({ maxBytes: READ_POOL_BYTES })
  const held: SharedArrayBuffer[][] = parts.map(() => [])
  const read = (i: number): Promise<Float32Array> | undefined => {
    if (!field.rerank || i >= parts.length) return undefined
    const vectors = parts[i]!.vectors({
      take: (size) => pool.take(size),
      give: (buffer) => pool.give(buffer),
      hold: (buffer) => held[i]!.push(buffer),
    })
    // Awaited below unless an earlier read fails first: never an unhandled rejection.
    vectors.catch(() => {})
    return vectors
  }
  // The first vectors are on their way while the code blocks are read and counted.
  const ahead = Array.from({ length: READ_AHEAD }, (_, i) => read(i))
  const blocks: Uint8Array[] = []
  for await (const { bytes } of ds.store.getMany(
    parts.map((p) => p.codes),
    { ...options, concurrency: 8 },
  ))
    blocks.push(bytes)
  const index = createVectorIndex({
    ...codec,
    keepVectors: field.rerank,
    listCapacity: listSizesOfCodes(codec.spatialIndex, codec.compressor, blocks),
  })
  for (let i = 0; i < parts.length; i++) {
    const vectors = await ahead.shift()
    ahead.push(read(i + READ_AHEAD))
    index.addCodes(blocks[i]!, { ids: parts[i]!.ids, ...(vectors ? { vectors } : {}) })
    blocks[i] = EMPTY
    for (const buffer of held[i]!.splice(0)) pool.give(buffer)
  }
  pool.clear()
  return index
}

/** Spare read buffers a build keeps (about READ_AHEAD + 1 buckets' full vectors). */
const READ_POOL_BYTES = 256 << 20

/** Buckets whose full vectors are read ahead of the one being inserted. */
const READ_AHEAD = 2
const EMPTY = new Uint8Array(0)

async function exactSearch(
  ds: Dataset,
  field: EmbeddingField,
  layer: Layer | undefined,
  queries: readonly (readonly number[] | Float32Array)[],
  k: number,
  allowed: Set<bigint> | undefined,
  options: AbortOptions,
): Promise<ExactScan[]> {
  for (const query of queries) checkExactQuery(field, query)
  // The scan and its top k are the vector layer's; this layer streams the field's batches,
  // once for every query.
  const scans = queries.map((query) =>
    createExactScan(query, {
      dim: field.dim,
      metric: field.metric,
      k,
      ...(allowed ? { filter: (id: bigint) => allowed.has(id) } : {}),
    }),
  )
  const add = (vectors: Float32Array, anchors: BigUint64Array) => {
    for (const scan of scans) scan.add(vectors, anchors)
  }
  if (layer === undefined) {
    for await (const batch of ds.iterArrowBatches({ fields: [field.name], batchSize: 4096, ...options })) {
      const anchors = batch.getChild('_anchor')!.toArray() as BigUint64Array
      add(flatVectors(batch.getChild(field.name)!, field.dim), anchors)
    }
  } else if (layer.segments !== null) {
    // A layer's own segments (records without a value have none to compare), latest first:
    // an anchor a later segment gives again counts once, with its latest value.
    const segments: Bucket[] = []
    for await (const { bucket } of ds.repository.buckets({ timeline: layer.segments } as Manifest, options))
      segments.push(bucket)
    const seen = new Set<bigint>()
    for (const segment of segments.reverse()) {
      const { anchors, values } = await readLayerSegment(ds.store, field, segment, options)
      const vectors = flatVectors(values, field.dim)
      const live: number[] = []
      for (let i = 0; i < anchors.length; i++) {
        if (!seen.has(anchors[i]!)) live.push(i)
        seen.add(anchors[i]!)
      }
      if (live.length === anchors.length) add(vectors, anchors)
      else {
        const kept = new Float32Array(live.length * field.dim)
        live.forEach((i, j) => {
          kept.set(vectors.subarray(i * field.dim, (i + 1) * field.dim), j * field.dim)
        })
        add(
          kept,
          BigUint64Array.from(live, (i) => anchors[i]!),
        )
      }
    }
  }
  return scans
}

/** A query for an exact scan: the field's dimension, finite, a direction under cosine. */
function checkExactQuery(field: EmbeddingField, query: readonly number[] | Float32Array): void {
  if (query === null || typeof query !== 'object' || query.length !== field.dim)
    throw new InvalidOptionError(
      'query',
      `${query?.length} dimensions`,
      `field '${field.name}' has ${field.dim}`,
    )
  let zero = true
  for (let i = 0; i < query.length; i++) {
    const x = query[i]!
    if (!Number.isFinite(x))
      throw new InvalidOptionError('query', 'a vector', 'has NaN or infinite components')
    if (x !== 0) zero = false
  }
  if (field.metric === 'cosine' && zero)
    throw new InvalidOptionError('query', 'the zero vector', 'has no direction under cosine')
}

/** Anchors whose scalar fields equal the filter's values, or undefined for no filter. */
async function filterAnchors(
  ds: Dataset,
  filter: SearchOptions['filter'],
  options: AbortOptions,
): Promise<Set<bigint> | undefined> {
  if (filter === undefined) return undefined
  const names = Object.keys(filter)
  for (const name of names) {
    const field = ds.manifest.schema.fields.find((f) => f.name === name)
    if (field === undefined || field.family !== 'scalar') {
      throw new InvalidOptionError('filter', name, 'filters compare scalar fields of the dataset')
    }
  }
  const allowed = new Set<bigint>()
  for await (const batch of ds.iterArrowBatches({ fields: names, batchSize: 8192, ...options })) {
    const anchors = batch.getChild('_anchor')!.toArray() as BigUint64Array
    const columns = names.map((n) => batch.getChild(n)!)
    for (let r = 0; r < batch.numRows; r++) {
      if (names.every((n, c) => columns[c]!.get(r) === filter[n])) allowed.add(anchors[r]!)
    }
  }
  return allowed
}
