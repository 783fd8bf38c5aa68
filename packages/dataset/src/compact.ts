import { encodeBucket, isCompressed, putEncodedBucket, readBucketColumns } from '@dreamdb/arrow'
import type { AbortOptions } from '@dreamdb/cas'
import { type Bucket, digestKey } from '@dreamdb/manifest'
import { CID } from 'multiformats/cid'
import { BUCKET_BINARY_BYTES, defaultBucketRecords } from './append.js'
import type { Dataset } from './dataset.js'
import { InvalidOptionError, MissingBucketObjectError } from './errors.js'
import type { DatasetInternals } from './internal.js'
import { commitPuttingAgain } from './put-again.js'

/** Objects checked at once by `refuseMissing`. */
const CHECKS_AT_ONCE = 16

/**
 * Refuse `verb` (MissingBucketObjectError, the first missing one) unless every listed
 * object of the buckets is stored: one request each, before anything is read or written.
 */
export async function refuseMissing(
  ds: Dataset,
  verb: 'migrate' | 'compact',
  needed: { position: number; bucket: Bucket; keys?: string[] }[],
  options: AbortOptions,
): Promise<void> {
  const all = needed.flatMap(({ position, bucket, keys }) =>
    (keys ?? Object.keys(bucket.fields)).map((key) => ({ position, key, cid: bucket.fields[key]!.cid })),
  )
  for (let at = 0; at < all.length; at += CHECKS_AT_ONCE) {
    const group = all.slice(at, at + CHECKS_AT_ONCE)
    const present = await Promise.all(group.map((o) => ds.store.has(o.cid, options)))
    const missing = group[present.indexOf(false)]
    if (missing !== undefined)
      throw new MissingBucketObjectError(
        verb,
        missing.cid.toString(),
        missing.position,
        missing.key,
        ds.store.url,
      )
  }
}

/** `read()`; an object of `bucket` found missing is named as MissingBucketObjectError. */
export async function readNamingMissing<T>(
  ds: Dataset,
  verb: 'migrate' | 'compact',
  position: number,
  bucket: Bucket,
  read: () => Promise<T>,
): Promise<T> {
  try {
    return await read()
  } catch (error) {
    const cid = (error as { code?: unknown; cid?: unknown }).cid
    if ((error as { code?: unknown }).code !== 'ERR_CAS_NOT_FOUND' || typeof cid !== 'string') throw error
    let digest: string | undefined
    try {
      digest = digestKey(CID.parse(cid))
    } catch {}
    const key = Object.entries(bucket.fields).find(([, o]) => digestKey(o.cid) === digest)?.[0]
    if (key === undefined) throw error
    throw new MissingBucketObjectError(
      verb,
      bucket.fields[key]!.cid.toString(),
      position,
      key,
      ds.store.url,
      {
        cause: error,
      },
    )
  }
}

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
  /** Called once the runs to merge are known, and after each run's commit. */
  onProgress?: (event: CompactProgress) => void
}

/** What `Dataset.compact` reports while it works. */
export type CompactProgress =
  /** `runs` runs of consecutive small buckets, `buckets` in all, will be merged, one commit each. */
  | { kind: 'planned'; runs: number; buckets: number; records: number }
  /** A run of `buckets` buckets (`records` records) is one bucket now, in `manifest`; `done` runs so far. */
  | { kind: 'merged'; done: number; runs: number; buckets: number; records: number; manifest: string }

/**
 * `Dataset.compact`: merge runs of small consecutive buckets into buckets of about
 * `targetRecords`, one commit per merged run, from the end of the timeline backwards.
 * Returns the new manifest, or `undefined` when nothing was small enough to merge.
 */
export async function compact(
  ds: Dataset,
  internals: DatasetInternals,
  // Progress stays here: the store's and the commit's own options take other callbacks.
  { onProgress, ...options }: CompactOptions,
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
  const runs: { start: number; buckets: Bucket[]; records: number }[] = []
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
  // Runs commit one by one: a missing object found while reading one would leave the runs
  // after it (in timeline order) compacted and the rest not. Checked first, it refuses all.
  await refuseMissing(
    ds,
    'compact',
    runs.flatMap((run) => run.buckets.map((bucket, i) => ({ position: run.start + i, bucket }))),
    options,
  )
  onProgress?.({
    kind: 'planned',
    runs: runs.length,
    buckets: runs.reduce((n, run) => n + run.buckets.length, 0),
    records: runs.reduce((n, run) => n + run.records, 0),
  })
  const codecs = await internals.codecs(options)
  let done = 0
  for (const run of runs.reverse()) {
    const columns: Record<string, unknown[]> = Object.fromEntries(fields.map((f) => [f.name, []]))
    for (const [i, bucket] of run.buckets.entries()) {
      const decoded = await readNamingMissing(ds, 'compact', run.start + i, bucket, () =>
        readBucketColumns(ds.store, fields, bucket, { ...options, codecs }),
      )
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
    const encoded = encodeBucket(fields, columns, records, codecs)
    const objects = await putEncodedBucket(ds.store, encoded, options)
    const mine = new Set(Object.values(objects).map((o) => o.cid.toString()))
    // A GC's delete of a dedup hit before the commit's check refuses the commit: put the
    // merged bucket again and commit again, as appends do (design/0008).
    const result = await commitPuttingAgain(
      () =>
        ds.repository.commit(
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
        ),
      async (missing) => {
        if (!mine.has(missing)) return false
        await putEncodedBucket(ds.store, encoded, options)
        return true
      },
    )
    await internals.moved(result.manifest, options)
    onProgress?.({
      kind: 'merged',
      done: ++done,
      runs: runs.length,
      buckets: run.buckets.length,
      records,
      manifest: ds.currentManifest(),
    })
  }
  return ds.currentManifest()
}
