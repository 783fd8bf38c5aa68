import {
  type EmbeddingCodec,
  encodeBucket,
  isCompressed,
  putEncodedBucket,
  readBucketColumns,
} from '@dreamdb/arrow'
import type { AbortOptions } from '@dreamdb/cas'
import type { EmbeddingField } from '@dreamdb/manifest'
import {
  createCompressor,
  loadCompressor,
  loadSpatialIndex,
  saveCompressor,
  saveSpatialIndex,
  trainSpatialIndex,
} from '@dreamdb/vector'
import type { CID } from 'multiformats/cid'
import { ALGORITHMS } from './codecs.js'
import { readNamingMissing } from './compact.js'
import type { Dataset } from './dataset.js'
import { InvalidOptionError, UnknownFieldError } from './errors.js'
import { asCid, assertMessage, type DatasetInternals, flatVectors } from './internal.js'
import { commitPuttingAgain } from './put-again.js'

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

/**
 * `Dataset.migrate`: opt an existing embedding field into IVF + RaBitQ (or back to float32)
 * without re-ingesting: train (or reuse) a spatial index and a compressor, re-encode only
 * that field's objects, and commit the result as a new manifest.
 */
export async function migrate(
  ds: Dataset,
  internals: DatasetInternals,
  options: MigrateOptions,
): Promise<string> {
  const ref = internals.writableRef()
  const fields = ds.manifest.schema.fields
  const field = fields.find((f) => f.name === options?.field)
  if (field === undefined)
    throw new UnknownFieldError(
      String(options?.field),
      fields.map((f) => f.name),
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
  const codecs = await internals.codecs(options)
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
  // Everything is read before anything is written, so a missing object refuses the whole
  // migrate with nothing written.
  for await (const { position, bucket } of ds.repository.buckets(ds.manifest, options)) {
    const column = (
      await readNamingMissing(ds, 'migrate', position, bucket, () =>
        readBucketColumns(ds.store, [field], bucket, { ...options, codecs }),
      )
    )[field.name]!
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
      ? await loadSpatialIndex(ds.store, spatialIndexCid, options)
      : await trainSpatialIndex(all, {
          dim: field.dim,
          metric,
          ...(options.lists !== undefined ? { lists: options.lists } : {}),
          seed,
          ...(options.signal ? { signal: options.signal } : {}),
        })
    const compressor = compressorCid
      ? await loadCompressor(ds.store, compressorCid, options)
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
      spatialIndex: await saveSpatialIndex(ds.store, spatialIndex, options),
      compressor: await saveCompressor(ds.store, compressor, options),
    }
    newCodecs.set(field.name, { spatialIndex, compressor })
  }
  const objects: Awaited<ReturnType<typeof putEncodedBucket>>[] = []
  const encodedBuckets: ReturnType<typeof encodeBucket>[] = []
  for (const vectors of perBucket) {
    const rows = Array.from({ length: vectors.length / field.dim }, (_, i) =>
      vectors.subarray(i * field.dim, (i + 1) * field.dim),
    )
    const encoded = encodeBucket([next], { [field.name]: rows }, rows.length, newCodecs)
    encodedBuckets.push(encoded)
    objects.push(await putEncodedBucket(ds.store, encoded, options))
  }
  const mine = new Set(objects.flatMap((o) => Object.values(o).map((f) => f.cid.toString())))
  const codec = newCodecs.get(field.name)
  // A GC's delete of a dedup hit before the commit's check refuses the commit: put the
  // objects again (the re-encoded buckets, the index and compressor saved here) and commit
  // again, as appends do (design/0008). An operator's object named by CID is saved here too.
  if (codec !== undefined)
    for (const cid of [next.spatialIndex, next.compressor]) if (cid) mine.add(cid.toString())
  const result = await commitPuttingAgain(
    () =>
      ds.repository.commit(
        ref,
        { kind: 'migrate', field: next, objects },
        {
          ...options,
          ...(options.message ? { message: options.message } : {}),
        },
      ),
    async (missing) => {
      if (!mine.has(missing)) return false
      for (const encoded of encodedBuckets) await putEncodedBucket(ds.store, encoded, options)
      if (codec !== undefined) {
        await saveSpatialIndex(ds.store, codec.spatialIndex, options)
        await saveCompressor(ds.store, codec.compressor, options)
      }
      return true
    },
  )
  return await internals.moved(result.manifest, options)
}
