import { encodeBucket, isCompressed, putEncodedBucket, readBucketColumns } from '@dreamdb/arrow'
import type { AbortOptions } from '@dreamdb/cas'
import type { Bucket } from '@dreamdb/manifest'
import { BUCKET_BINARY_BYTES, defaultBucketRecords } from './append.js'
import type { Dataset } from './dataset.js'
import { InvalidOptionError } from './errors.js'
import type { DatasetInternals } from './internal.js'

export interface CompactOptions extends AbortOptions {
  /**
   * Merge consecutive buckets until a merged bucket would pass this many records.
   * @default as `appendMany`'s `bucketRecords`
   */
  targetRecords?: number
  /**
   * ... or this many bytes of binary values (images), counted from the buckets' metadata.
   * @default as `appendMany`'s `bucketBytes` (256 MiB)
   */
  targetBytes?: number
}

/**
 * `Dataset.compact`: merge runs of small consecutive buckets into buckets of about
 * `targetRecords`, one commit per merged run, from the end of the timeline backwards.
 * Returns the new manifest, or `undefined` when nothing was small enough to merge.
 */
export async function compact(
  ds: Dataset,
  internals: DatasetInternals,
  options: CompactOptions,
): Promise<string | undefined> {
  const ref = internals.writableRef()
  const manifest = ds.manifest
  const fields = manifest.schema.fields
  const target = options.targetRecords ?? defaultBucketRecords(fields)
  if (!Number.isSafeInteger(target) || target < 2)
    throw new InvalidOptionError('targetRecords', target, 'must be >= 2')
  const targetBytes = options.targetBytes ?? BUCKET_BINARY_BYTES
  if (!Number.isSafeInteger(targetBytes) || targetBytes < 1)
    throw new InvalidOptionError('targetBytes', targetBytes, 'must be an integer >= 1')
  // A bucket's binary bytes: its binary fields' fragments (`<field>`, `<field>/fragment-<k>`).
  const binary = fields.filter((f) => f.family === 'binary').map((f) => f.name)
  const binaryBytes = (bucket: Bucket) =>
    Object.entries(bucket.fields).reduce((n, [key, object]) => {
      const slash = key.indexOf('/')
      const name = slash === -1 ? key : key.slice(0, slash)
      const fragment = slash === -1 || key.slice(slash + 1).startsWith('fragment-')
      return binary.includes(name) && fragment ? n + object.bytes : n
    }, 0)
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
  let current: { start: number; buckets: Bucket[]; records: number; bytes: number } | undefined
  for await (const { position, bucket } of ds.repository.buckets(manifest, options)) {
    const bytes = binaryBytes(bucket)
    if (
      current !== undefined &&
      current.records + bucket.records <= target &&
      current.bytes + bytes <= targetBytes
    ) {
      current.buckets.push(bucket)
      current.records += bucket.records
      current.bytes += bytes
      continue
    }
    if (current !== undefined && current.buckets.length > 1) runs.push(current)
    current = { start: position, buckets: [bucket], records: bucket.records, bytes }
  }
  if (current !== undefined && current.buckets.length > 1) runs.push(current)
  if (runs.length === 0) return undefined
  const codecs = await internals.codecs(options)
  for (const run of runs.reverse()) {
    const columns: Record<string, unknown[]> = Object.fromEntries(fields.map((f) => [f.name, []]))
    for (const bucket of run.buckets) {
      const decoded = await readBucketColumns(ds.store, fields, bucket, { ...options, codecs })
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
    const objects = await putEncodedBucket(ds.store, encodeBucket(fields, columns, records, codecs), options)
    const result = await ds.repository.commit(
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
    await internals.moved(result.manifest, options)
  }
  return ds.currentManifest()
}
