import { writeLayerSegment } from '@dreamdb/arrow'
import type { AbortOptions } from '@dreamdb/cas'
import { checkLayer, type EmbeddingField, type Field, type ScalarKind } from '@dreamdb/manifest'
import type { Metric } from '@dreamdb/vector'
import type { CID } from 'multiformats/cid'
import { ALGORITHMS } from './codecs.js'
import type { Dataset } from './dataset.js'
import { InvalidOptionError, InvalidSampleError, UnknownFieldError } from './errors.js'
import { asCid, assertMessage, type DatasetInternals } from './internal.js'
import { commitPuttingAgain } from './put-again.js'

/** A layer sample: the anchor of a record and its value. */
export type Sample = readonly [anchor: bigint | number, value: unknown]

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

/** `Dataset.addScalarLayer`: values for the anchors given, nothing else written. */
export async function addScalarLayer(
  ds: Dataset,
  internals: DatasetInternals,
  name: string,
  parentField: string,
  kind: ScalarKind,
  samples: readonly Sample[],
  options: AbortOptions,
): Promise<string> {
  return await addLayer(
    ds,
    internals,
    { name, family: 'scalar', kind } as Field,
    parentField,
    samples,
    options,
  )
}

/** `Dataset.addEmbeddingLayer`, e.g. a student model's outputs. */
export async function addEmbeddingLayer(
  ds: Dataset,
  internals: DatasetInternals,
  init: EmbeddingLayerInit,
  options: AbortOptions,
): Promise<string> {
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
  return await addLayer(ds, internals, field, init.parentField, init.samples, options)
}

async function addLayer(
  ds: Dataset,
  internals: DatasetInternals,
  input: Field,
  parentField: string,
  samples: readonly Sample[],
  options: AbortOptions,
): Promise<string> {
  const ref = internals.writableRef()
  const manifest = ds.manifest
  const known = [...manifest.schema.fields.map((f) => f.name), ...manifest.layers.map((l) => l.name)]
  if (!known.includes(parentField)) throw new UnknownFieldError(parentField, known)
  // The definition against this state (name, kind, dim, metric, a clash with a base field,
  // a layer re-added with another definition), before any object is written.
  const field = checkLayer(manifest, { name: input.name, parent: parentField, field: input })
  if (field.family === 'embedding') checkEmbeddingCodec(field)
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
  const ranges = await anchorRanges(ds, options)
  anchors.forEach((anchor, i) => {
    if (!contains(ranges, anchor)) {
      throw new InvalidSampleError(field.name, i, `anchor ${anchor} is not a record of this dataset`)
    }
  })
  // A compressed layer's codec is loaded (and checked against its dim and metric) and its
  // values validated by their encoding, before the segment is stored.
  const codecs = await internals.codecs(options, [field])
  const write = () =>
    writeLayerSegment(
      ds.store,
      field,
      anchors,
      samples.map((s) => s[1]),
      { ...options, codecs },
    )
  const segment = await write()
  // The segment's objects may be dedup hits on old garbage (a layer added again after an
  // aborted run) that a GC deletes before the commit's check (design/0008): written again.
  // The codec's spatial index and compressor are not this call's to put again.
  const result = await commitPuttingAgain(
    () =>
      ds.repository.commit(
        ref,
        { kind: 'layer', name: field.name, parent: parentField, field, segments: [segment] },
        options,
      ),
    async (missing) => {
      if (!Object.values(segment.fields).some((o) => o.cid.toString() === missing)) return false
      await write()
      return true
    },
  )
  return await internals.moved(result.manifest, options)
}

/** An embedding layer's algorithm, spatial index, compressor and metric agree. */
function checkEmbeddingCodec(field: EmbeddingField): void {
  if (field.algorithm !== null && !(field.algorithm in ALGORITHMS)) {
    throw new InvalidOptionError(
      'algorithm',
      field.algorithm,
      `must be one of ${Object.keys(ALGORITHMS).join(', ')} or null`,
    )
  }
  const compressed = field.spatialIndex !== null || field.compressor !== null
  if (compressed && (field.algorithm === null || field.spatialIndex === null || field.compressor === null)) {
    throw new InvalidOptionError(
      field.algorithm === null ? 'algorithm' : field.spatialIndex === null ? 'spatialIndex' : 'compressor',
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

/** Sorted anchor ranges of every record (metadata only). */
async function anchorRanges(ds: Dataset, options: AbortOptions): Promise<[bigint, bigint][]> {
  const ranges: [bigint, bigint][] = []
  for await (const { bucket } of ds.repository.buckets(ds.manifest, options)) {
    for (const r of bucket.anchorRanges ?? []) ranges.push([r.start, r.start + BigInt(r.count)])
  }
  return ranges.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
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

export interface DropLayerOptions extends AbortOptions {
  message?: string
}

/** `Dataset.dropLayer`: one commit without the layer; nothing is deleted. */
export async function dropLayer(
  ds: Dataset,
  internals: DatasetInternals,
  name: string,
  options: DropLayerOptions = {},
): Promise<string> {
  const ref = internals.writableRef()
  assertMessage(options.message)
  const { layers, schema } = ds.manifest
  if (!layers.some((l) => l.name === name)) {
    const reason = schema.fields.some((f) => f.name === name)
      ? 'is a base field; only layers can be dropped'
      : `is not a layer of this dataset (its layers: ${layers.map((l) => `'${l.name}'`).join(', ') || 'none'})`
    throw new InvalidOptionError('layer', name, reason)
  }
  const result = await ds.repository.commit(ref, { kind: 'drop', layer: name }, options)
  return await internals.moved(result.manifest, options)
}
