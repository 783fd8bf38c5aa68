import { anchorsOf, isCompressed, readBucketColumns } from '@dreamdb/arrow'
import type { AbortOptions } from '@dreamdb/cas'
import type { EmbeddingField } from '@dreamdb/manifest'
import { createExactScan, createVectorIndex, type VectorIndex } from '@dreamdb/vector'
import { LRUCache } from 'lru-cache'
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
export type SearchIndexes = LRUCache<string, { manifest: string; index: Promise<VectorIndex> }>

/**
 * At most this many fields' indexes per dataset, least recently searched dropped first. An
 * index holds every code of its field, and its full vectors when it reranks, so the bound
 * is small: a dataset is rarely searched on more than a couple of embedding fields.
 */
export const SEARCH_INDEX_FIELDS = 4

export function createSearchIndexes(): SearchIndexes {
  return new LRUCache({ max: SEARCH_INDEX_FIELDS })
}

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
  const fields = ds.manifest.schema.fields
  const field = fields.find((f) => f.name === fieldName)
  if (field === undefined)
    throw new UnknownFieldError(
      fieldName,
      fields.map((f) => f.name),
    )
  if (field.family !== 'embedding')
    throw new InvalidOptionError('field', fieldName, `is a ${field.family} field, not an embedding`)
  const k = options?.k
  if (!Number.isSafeInteger(k) || k < 1) throw new InvalidOptionError('k', k, 'must be an integer >= 1')
  const allowed = await filterAnchors(ds, options.filter, options)
  const vectorsQuery = Array.from(query as ArrayLike<number>)
  if (!isCompressed(field)) return await exactSearch(ds, field, vectorsQuery, k, allowed, options)
  const index = await searchIndex(ds, internals, indexes, field, options)
  const result = index.search(vectorsQuery, {
    k,
    ...(options.nprobe !== undefined ? { nprobe: options.nprobe } : {}),
    ...(options.rerank !== undefined ? { rerank: options.rerank } : {}),
    ...(allowed ? { filter: (id: bigint) => allowed.has(id) } : {}),
  })
  return { anchors: result.ids, distances: result.distances }
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
  options: AbortOptions,
): Promise<VectorIndex> {
  const manifestCid = ds.currentManifest()
  const cached = indexes.get(field.name)
  if (cached?.manifest === manifestCid) return await cached.index
  const manifest = ds.manifest
  const index = (async () => {
    const codec = (await internals.codecs(options)).get(field.name)!
    const built = createVectorIndex({ ...codec, keepVectors: field.rerank })
    for await (const { bucket } of ds.repository.buckets(manifest, options)) {
      const block = await ds.store.get(bucket.fields[field.name]!.cid, options)
      const vectors = field.rerank
        ? flatVectors((await readBucketColumns(ds.store, [field], bucket, options))[field.name]!, field.dim)
        : undefined
      built.addCodes(block, { ids: anchorsOf(bucket), ...(vectors ? { vectors } : {}) })
    }
    return built
  })()
  const entry = { manifest: manifestCid, index }
  // A failed build (an abort, a read error) is not kept: the next search builds again.
  index.catch(() => {
    if (indexes.peek(field.name) === entry) indexes.delete(field.name)
  })
  indexes.set(field.name, entry)
  return await index
}

async function exactSearch(
  ds: Dataset,
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
  if (field.metric === 'cosine' && query.every((x) => x === 0))
    throw new InvalidOptionError('query', 'the zero vector', 'has no direction under cosine')
  // The scan and its top k are the vector layer's; this layer streams the field's batches.
  const scan = createExactScan(query, {
    dim: field.dim,
    metric: field.metric,
    k,
    ...(allowed ? { filter: (id: bigint) => allowed.has(id) } : {}),
  })
  for await (const batch of ds.iterArrowBatches({ fields: [field.name], batchSize: 4096, ...options })) {
    const anchors = batch.getChild('_anchor')!.toArray() as BigUint64Array
    scan.add(flatVectors(batch.getChild(field.name)!, field.dim), anchors)
  }
  const { ids, distances } = scan.result()
  return { anchors: ids, distances }
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
