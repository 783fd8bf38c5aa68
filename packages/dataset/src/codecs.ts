import type { Codecs, EmbeddingCodec } from '@dreamdb/arrow'
import { type AbortOptions, openStore, type Store } from '@dreamdb/cas'
import type { EmbeddingField, Field, Metric as SchemaMetric } from '@dreamdb/manifest'
import {
  createCompressor,
  loadCompressor,
  loadSpatialIndex,
  type Metric,
  saveCompressor,
  saveSpatialIndex,
  trainSpatialIndex,
} from '@dreamdb/vector'
import { InvalidOptionError } from './errors.js'

/**
 * The schema's metric values (manifest) and the vector layer's `Metric` are defined once in
 * each layer, neither importing the other; this stops compiling if the two ever differ.
 */
export const METRICS_AGREE: [Metric, SchemaMetric] extends [SchemaMetric, Metric] ? true : never = true

/** `dreamdb.ivf-*` algorithms and the metric each one means. */
export const ALGORITHMS: Record<string, Metric> = {
  'dreamdb.ivf-cosine': 'cosine',
  'dreamdb.ivf-l2': 'l2',
  'dreamdb.ivf-ip': 'ip',
}

/**
 * Loaded codecs by `spatialIndex/compressor` CIDs: a `Map` for one call, or a dataset's
 * bounded `LRUCache`. A load that fails is deleted, so the next call retries it.
 */
export interface CodecCache {
  get(key: string): Promise<EmbeddingCodec> | undefined
  set(key: string, value: Promise<EmbeddingCodec>): unknown
  delete(key: string): unknown
}

/**
 * The spatial index and compressor of each compressed embedding field among `fields`, loaded
 * once per pair of CIDs (`cache` is the caller's), and checked against the field's dimension
 * and metric.
 */
export async function loadCodecs(
  store: Store,
  fields: readonly Field[],
  cache: CodecCache,
  options: AbortOptions = {},
): Promise<Codecs> {
  const codecs = new Map<string, EmbeddingCodec>()
  for (const field of fields) {
    if (field.family !== 'embedding' || field.spatialIndex === null || field.compressor === null) continue
    const key = `${field.spatialIndex}/${field.compressor}`
    let codec = cache.get(key)
    if (codec === undefined) {
      codec = Promise.all([
        loadSpatialIndex(store, field.spatialIndex, options),
        loadCompressor(store, field.compressor, options),
      ]).then(([spatialIndex, compressor]) => ({ spatialIndex, compressor }))
      codec.catch(() => cache.delete(key))
      cache.set(key, codec)
    }
    const loaded = await codec
    checkCodecFits(field, loaded)
    codecs.set(field.name, loaded)
  }
  return codecs
}

/** An operator's index or compressor for another dimension or metric is refused. */
export function checkCodecFits(field: EmbeddingField, codec: EmbeddingCodec): void {
  for (const [what, object] of [
    ['spatialIndex', codec.spatialIndex],
    ['compressor', codec.compressor],
  ] as const) {
    if (object.dim !== field.dim || object.metric !== field.metric) {
      throw new InvalidOptionError(
        what,
        String(what === 'spatialIndex' ? field.spatialIndex : field.compressor),
        `is for dim ${object.dim} and metric '${object.metric}'; field '${field.name}' needs dim ${field.dim} and '${field.metric}'`,
      )
    }
  }
}

export interface TrainCodecOptions extends AbortOptions {
  /** Where to save the two objects: a backend URL or an open store. */
  backend: string | Store
  /** `dreamdb.ivf-cosine`, `dreamdb.ivf-l2` or `dreamdb.ivf-ip`. */
  algorithm: string
  dim: number
  /** IVF lists. @default about sqrt(vectors) */
  lists?: number
  /** Bits per dimension of the codes, 1 to 8. @default 1 */
  bits?: number
  seed?: number
}

/**
 * Train a spatial index on sample vectors and create a compressor, save both, and return
 * their CIDs: what an operator publishes for `addEmbeddingLayer({ algorithm, spatialIndex,
 * compressor })` (the seed's distillation pattern) or `migrate`.
 */
export async function trainEmbeddingCodec(
  vectors: Float32Array | readonly (readonly number[] | Float32Array)[],
  options: TrainCodecOptions,
): Promise<{ spatialIndex: string; compressor: string; algorithm: string; dim: number }> {
  const metric = ALGORITHMS[options.algorithm]
  if (metric === undefined) {
    throw new InvalidOptionError(
      'algorithm',
      options.algorithm,
      `must be one of ${Object.keys(ALGORITHMS).join(', ')}`,
    )
  }
  const { signal } = options
  const store =
    typeof options.backend === 'string'
      ? await openStore(options.backend, signal ? { signal } : {})
      : options.backend
  const seed = options.seed ?? 0
  const spatialIndex = await trainSpatialIndex(vectors as Float32Array, {
    dim: options.dim,
    metric,
    seed,
    ...(options.lists !== undefined ? { lists: options.lists } : {}),
    ...(signal ? { signal } : {}),
  })
  const compressor = createCompressor({ dim: options.dim, metric, bits: options.bits ?? 1, seed })
  return {
    spatialIndex: (await saveSpatialIndex(store, spatialIndex, options)).toString(),
    compressor: (await saveCompressor(store, compressor, options)).toString(),
    algorithm: options.algorithm,
    dim: options.dim,
  }
}
