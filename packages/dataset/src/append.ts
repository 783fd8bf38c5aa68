import { encodeBucket, FRAGMENT_BYTES, putEncodedBucket } from '@dreamdb/arrow'
import { type AbortOptions, cidOf, type ProgressOptions, type Store } from '@dreamdb/cas'
import {
  type BucketInput,
  type CommitMeta,
  type CommitOptions,
  checkMeta,
  type Field,
  type FieldObject,
} from '@dreamdb/manifest'
import { LRUCache } from 'lru-cache'
import type { Dataset } from './dataset.js'
import { InvalidOptionError, UnknownFieldError } from './errors.js'
import { assertMessage, type DatasetInternals } from './internal.js'
import { commitPuttingAgain } from './put-again.js'

/** One record: a value per base field. */
export type DatasetRecord = Record<string, unknown>

export interface AppendOptions extends AbortOptions {
  /**
   * Records per bucket (one object per field per bucket). @default a power of two from 1 024
   * to 32 768 that keeps a bucket's embeddings near 16 MiB (8 192 for 512-d float32, 32 768
   * for 128-d)
   */
  bucketRecords?: number
  /**
   * Bytes of binary values per bucket, at most: a bound on what an iteration that reads the
   * binary fields holds per bucket (8 192 records of 20 kB images fit). Without
   * `bucketRecords`, the default record count is halved (down to 1 024) while the records'
   * binary values at their mean size would exceed it. @default 256 MiB
   */
  bucketBytes?: number
  /**
   * Bytes of binary values per fragment, at most (a larger value gets a fragment of its
   * own): a bucket's binary field is stored as fragments, each read whole and verified by
   * its hash. @default 64 MiB
   */
  fragmentBytes?: number
  message?: string
  /**
   * Structured metadata kept with the commit beside the message (e.g. ingest progress),
   * read back by `log` and `inspect`; checked before anything is written.
   */
  meta?: CommitMeta
  /**
   * The anchor of the first record: the records get `anchorStart` .. `anchorStart + n - 1`,
   * in order, instead of anchors minted here. For a writer that assigns anchors itself (an
   * ingest that keeps its source's order across interrupted runs); it reserves them first
   * with `repository.mintAnchors`, so that no other writer can be given them.
   */
  anchorStart?: bigint
  /**
   * Awaited after every object of the append is stored and before the commit; a throw stops
   * the append with nothing committed (its objects stay unreferenced, for GC). For a writer
   * that stores the objects of several appends at once but commits them in its own order
   * (ingest: the next chunk's objects are written while the one before commits) and checks
   * its right to commit last (a shard claim, design/0006).
   */
  beforeCommit?: () => Promise<void>
  /**
   * The writer's own test of the commits this append lands after, from `since` on (the
   * branch head it last read; `null`: all of them): a reason makes the append fail with
   * ERR_MANIFEST_CONFLICT, nothing committed (its objects stay unreferenced, for GC).
   * Tested in the commit's own walk, so no commit it lands on escapes it (`@dreamdb/manifest`'s
   * `CommitOptions.conflictsWith`). For a writer that must not land rows another writer may
   * have committed meanwhile (ingest: a shard claim taken over while it was stopped).
   */
  conflictsWith?: NonNullable<CommitOptions['conflictsWith']>
  /** With `conflictsWith`: the head the test starts after (see `CommitOptions.since`). */
  since?: Exclude<CommitOptions['since'], undefined>
  /**
   * Known sha2-256 digests of binary fields' values, by field name: 32 bytes per record, in
   * the order of `records`. The bucket's index takes them instead of hashing each value again
   * (`@dreamdb/arrow`'s `EncodeOptions.digests`): for a writer that hashed the values where
   * it had them (ingest, on its decode thread). Not checked against the values: a wrong digest
   * is stored as given, and reading that record then fails verification.
   */
  digests?: Readonly<Record<string, Uint8Array>>
}

/**
 * `Dataset.appendMany`: values are checked against the schema, encoded per field into
 * objects of at most `bucketRecords` records, stored, then committed in one manifest.
 */
export async function appendMany(
  ds: Dataset,
  internals: DatasetInternals,
  records: readonly DatasetRecord[],
  options: AppendOptions,
): Promise<string> {
  const ref = internals.writableRef()
  if (!Array.isArray(records) || records.length === 0) {
    throw new InvalidOptionError(
      'records',
      Array.isArray(records) ? 'an empty list' : typeof records,
      'append at least one record',
    )
  }
  const fields = ds.manifest.schema.fields
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
  const maxBytes = options.bucketBytes ?? BUCKET_BINARY_BYTES
  const perBucket =
    options.bucketRecords ?? fitBinary(defaultBucketRecords(fields), records, fields, maxBytes)
  const fragmentBytes = options.fragmentBytes ?? FRAGMENT_BYTES
  if (!Number.isSafeInteger(perBucket) || perBucket < 1)
    throw new InvalidOptionError('bucketRecords', perBucket, 'must be an integer >= 1')
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1)
    throw new InvalidOptionError('bucketBytes', maxBytes, 'must be an integer >= 1')
  if (!Number.isSafeInteger(fragmentBytes) || fragmentBytes < 1)
    throw new InvalidOptionError('fragmentBytes', fragmentBytes, 'must be an integer >= 1')
  assertMessage(options.message)
  // Bad meta is refused before any object is stored or anchor minted.
  const meta = checkMeta(options.meta)
  const anchorStart = options.anchorStart
  if (anchorStart !== undefined && (typeof anchorStart !== 'bigint' || anchorStart < 1n)) {
    throw new InvalidOptionError('anchorStart', anchorStart, 'must be a bigint >= 1 (a minted anchor)')
  }
  const digests = checkDigests(options.digests, fields, records.length)
  const groups = splitIntoBuckets(records, fields, perBucket, maxBytes)
  // Encode everything first: a bad value fails before anything is written.
  const codecs = await internals.codecs(options)
  let first = 0
  const encoded = groups.map((group) => {
    const from = first
    first += group.length
    return encodeBucket(
      fields,
      Object.fromEntries(fields.map((f) => [f.name, group.map((r) => r[f.name])])),
      group.length,
      codecs,
      {
        fragmentBytes,
        // A group is the records [from, from + length) of the call: its digests are those.
        ...(digests !== undefined
          ? {
              digests: Object.fromEntries(
                Object.entries(digests).map(([name, all]) => [
                  name,
                  all.subarray(from * 32, (from + group.length) * 32),
                ]),
              ),
            }
          : {}),
      },
    )
  })
  const buckets: BucketInput[] = []
  // Objects this call's puts wrote (not dedup hits): new, so the commit need not ask the
  // store for them again. A dedup hit may be an old unreferenced object a GC is judging
  // (design/0008): the commit checks that one is still there, unless this process's own
  // puts wrote it anew moments ago (`RECENT_WRITE_MS`): then it is as young as the objects
  // written now (ingest's chunks share a few objects, such as a column of one value).
  const written: FieldObject['cid'][] = []
  const recent = recentWritesOf(ds.store)
  const putOptions: AbortOptions & ProgressOptions = {
    ...(options.signal ? { signal: options.signal } : {}),
    onProgress: (event) => {
      if (event.type !== 'dreamdb:cas:put') return
      if (event.stored) {
        written.push(event.cid)
        recent.set(event.cid.toString(), true)
      } else if (young(recent, event.cid.toString())) {
        written.push(event.cid)
      }
    },
  }
  const now = Date.now()
  let placed = 0n
  for (const [g, group] of groups.entries()) {
    const objects = await putUnlessRecent(ds.store, encoded[g]!, putOptions, recent, written)
    const start =
      anchorStart !== undefined
        ? anchorStart + placed
        : await ds.repository.mintAnchors(group.length, options)
    placed += BigInt(group.length)
    buckets.push({
      records: group.length,
      anchorRanges: [{ start, count: group.length }],
      timeMin: now,
      timeMax: now,
      fields: objects,
    })
  }
  await options.beforeCommit?.()
  options.signal?.throwIfAborted()
  const commitOptions = {
    ...options,
    ...(options.message ? { message: options.message } : {}),
    ...(meta !== undefined ? { meta } : {}),
    written,
  }
  // A dedup hit's object deleted by a GC before the commit's check (design/0008): every object
  // of this append is still held here, so it is put again (a missing one written anew, young,
  // and in `written`; the others dedup hits, checked again) and the commit tried again.
  const result = await commitPuttingAgain(
    () => ds.repository.commit(ref, { kind: 'append', buckets }, commitOptions),
    async () => {
      for (const bucket of encoded) await putEncodedBucket(ds.store, bucket, putOptions)
      return true
    },
  )
  return await internals.moved(result.manifest, options)
}

/**
 * How long an object this process wrote anew counts as written by a later append that finds
 * it stored (a dedup hit), so that append's commit does not check it (design/0003, "Commits";
 * design/0008): half the commit's own re-check age (20 minutes), and the S3 store's freshen
 * age, under which a dedup hit does not make the object younger anyway.
 */
export const RECENT_WRITE_MS = 10 * 60_000
/** Objects remembered per store, at most (the oldest are forgotten first). */
const RECENT_WRITES_MAX = 1 << 16

/**
 * Objects this process's appends wrote anew into one store, each remembered for
 * `RECENT_WRITE_MS` by the wall clock (the clock GC judges objects' ages by).
 */
type RecentWrites = LRUCache<string, true>

function recentCache(): RecentWrites {
  return new LRUCache<string, true>({
    max: RECENT_WRITES_MAX,
    ttl: RECENT_WRITE_MS,
    ttlResolution: 0,
    perf: { now: () => Date.now() },
  })
}

/** Whether this process wrote `cid` anew less than `RECENT_WRITE_MS` ago (a clock set back counts as old). */
function young(recent: RecentWrites, cid: string): boolean {
  const left = recent.getRemainingTTL(cid)
  return left > 0 && left <= RECENT_WRITE_MS
}

const recentWrites = new WeakMap<Store, RecentWrites>()

/**
 * Objects up to this size that an earlier append through the same store wrote anew less than
 * `RECENT_WRITE_MS` ago are not put again: their digest is taken here (cheap at this size)
 * and they are named as written. A put of one would cost a request to find it stored (S3: a
 * refused conditional put, a `HEAD` for its age and a `GET` to check its bytes, design/0002)
 * for an object known to be there and young. Such a repeat does not heal the object if it
 * was damaged since (a put by another process, or after those 10 minutes, does).
 */
const SKIP_RECENT_BYTES = 64 << 10

type EncodedBucket = ReturnType<typeof encodeBucket>

/** `putEncodedBucket`, less the small objects this store's appends wrote anew just now. */
async function putUnlessRecent(
  store: Store,
  encoded: EncodedBucket,
  options: AbortOptions & ProgressOptions,
  recent: RecentWrites,
  written: FieldObject['cid'][],
): Promise<Record<string, FieldObject>> {
  const known = new Map<string, FieldObject>()
  for (const [key, bytes] of encoded) {
    if (bytes.byteLength > SKIP_RECENT_BYTES) continue
    const cid = cidOf(bytes)
    if (!young(recent, cid.toString())) continue
    known.set(key, { cid, bytes: bytes.byteLength })
    written.push(cid)
  }
  const put = await putEncodedBucket(
    store,
    encoded.filter(([key]) => !known.has(key)),
    options,
  )
  // In the bucket's order of keys, as putEncodedBucket returns them.
  return Object.fromEntries(encoded.map(([key]) => [key, known.get(key) ?? put[key]!]))
}

function recentWritesOf(store: Store): RecentWrites {
  let recent = recentWrites.get(store)
  if (recent === undefined) {
    recent = recentCache()
    recentWrites.set(store, recent)
  }
  return recent
}

/** `digests`, checked: binary fields only, 32 bytes per record. */
function checkDigests(
  digests: AppendOptions['digests'],
  fields: readonly Field[],
  records: number,
): Readonly<Record<string, Uint8Array>> | undefined {
  if (digests === undefined) return undefined
  if (typeof digests !== 'object' || digests === null)
    throw new InvalidOptionError('digests', digests, 'an object of 32 bytes per record by binary field name')
  for (const [name, value] of Object.entries(digests)) {
    const field = fields.find((f) => f.name === name)
    if (field === undefined)
      throw new UnknownFieldError(
        name,
        fields.map((f) => f.name),
      )
    if (field.family !== 'binary')
      throw new InvalidOptionError(`digests.${name}`, field.family, 'digests are for binary fields only')
    if (!(value instanceof Uint8Array) || value.byteLength !== records * 32) {
      throw new InvalidOptionError(
        `digests.${name}`,
        value instanceof Uint8Array ? `${value.byteLength} bytes` : typeof value,
        `32 bytes per record: ${records * 32}`,
      )
    }
  }
  return digests
}

/**
 * Bytes of binary values per bucket, at most, by default. Until issue #13 this was 64 MiB and
 * a bucket's binary values were one object, so 20 kB images cut every field's buckets to
 * ~3 355 records; now they are fragments of at most 64 MiB, and this bound keeps what an
 * iteration over the images holds per window near what it held before (a window is at least
 * 4 096 records, in whole buckets): 8 192 records of 20 kB images fit, with 512-d embeddings.
 */
export const BUCKET_BINARY_BYTES = 256 << 20

/**
 * The default records per bucket, halved (down to 1 024) while the records' binary values,
 * at their mean size, would not fit in `maxBytes`: buckets stay a power of two, so batches
 * still tile them, where cutting at the byte bound would leave odd sizes.
 */
function fitBinary(
  perBucket: number,
  records: readonly DatasetRecord[],
  fields: readonly Field[],
  maxBytes: number,
): number {
  const binary = fields.filter((f) => f.family === 'binary').map((f) => f.name)
  if (binary.length === 0) return perBucket
  let total = 0
  for (const record of records)
    for (const name of binary) total += (record[name] as Uint8Array | undefined)?.byteLength ?? 0
  const mean = total / records.length
  while (perBucket > 1024 && perBucket * mean > maxBytes) perBucket /= 2
  return perBucket
}

/** Bytes of fixed-width values a default bucket aims at. */
const BUCKET_TARGET_BYTES = 16 << 20

/**
 * Records per bucket when the caller does not say: as many as keep the embeddings near 16
 * MiB, a power of two so that common batch sizes tile a bucket (an in-order batch inside
 * one bucket is handed out without a copy), from 1 024 (metadata per record stays small) to
 * 32 768 (a shuffled first batch still reads at most ~16 MiB of vectors; small scalar
 * columns get objects of 128 KiB and more instead of 32 KiB, so a pass at 128-d costs a
 * quarter of the requests it did with 8 192). Binary values do not count: they are cut into
 * fragments (`fragmentBytes`), and bounded per bucket only by `bucketBytes`.
 */
export function defaultBucketRecords(fields: readonly Field[]): number {
  const bytesPerRecord = fields.reduce((sum, f) => sum + (f.family === 'embedding' ? f.dim * 4 : 0), 0)
  let records = 32_768
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
