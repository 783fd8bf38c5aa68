import {
  anchorColumn,
  anchorsOf,
  arrowTypeOf,
  type Codecs,
  embeddingColumn,
  readBucketColumns,
  readLayerSegment,
} from '@dreamdb/arrow'
import type { Store } from '@dreamdb/cas'
import type { Bucket, EmbeddingField, Field, Layer, Manifest, Repository } from '@dreamdb/manifest'
import {
  Table as ArrowTable,
  Binary,
  type DataType,
  type Dictionary,
  type Int32,
  makeData,
  makeVector,
  type RecordBatch,
  Utf8,
  type Vector,
  vectorFromArray,
} from 'apache-arrow'
import { InvalidOptionError, ResumeMismatchError, UnknownFieldError } from './errors.js'
import { buildPlan, type Plan, permutation, type Unit, type Window, windowsOf } from './plan.js'

export interface IterOptions {
  /** Records per batch. @default 256 */
  batchSize?: number
  /** Fields to read (base fields and layers); only their objects are fetched. @default every base field */
  fields?: string[]
  /** Shuffle with this seed; omitted: append order. */
  shuffleSeed?: number
  /** A different epoch gives a different order for the same seed. @default 0 */
  epoch?: number
  /** This DataLoader worker, of `numWorkers`. @default 0 of 1 */
  worker?: number
  numWorkers?: number
  /** This rank, of `worldSize`. @default 0 of 1 */
  rank?: number
  worldSize?: number
  /** Only records appended within [start, end] (ms since the epoch, or Dates). */
  timeRange?: [number | Date, number | Date]
  /**
   * Only the epoch's batches [start, end), instead of this partition's run: for a loader that
   * assigns batches itself (a resume with another number of workers). Batches past the
   * epoch's last come back empty, so every caller of the same range steps the same number of
   * times. Takes the place of `worker`/`rank`, which must be left at 0 of 1.
   */
  batchRange?: [number, number]
  /** Continue from a state taken with `state()` after some batch. */
  resumeFrom?: ResumeState
  /** Records per shuffle window. @default max(4 * batchSize, 4096) */
  shuffleWindow?: number
  /** Windows fetched ahead while the consumer works. @default 2 */
  prefetch?: number
  signal?: AbortSignal | undefined
}

/** What it takes to continue an epoch in another process: small and JSON-serialisable. */
export interface ResumeState {
  format: 'dreamdb.resume/1'
  manifest: string
  batchSize: number
  fields: string[]
  shuffleSeed: number | null
  epoch: number
  rank: number
  worldSize: number
  worker: number
  numWorkers: number
  timeRange: [number, number] | null
  /** The epoch's batches asked for with `batchRange`, else null (the partition's run). */
  batchRange?: [number, number] | null
  /** Batches of this partition already yielded. */
  nextBatch: number
}

/** An async iterable of record batches that can say where it is. */
export interface BatchStream extends AsyncIterable<RecordBatch> {
  /** The state after the last batch yielded; pass it as `resumeFrom` to continue. */
  state(): ResumeState
}

function integer(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidOptionError(name, value, `must be an integer from ${min} to ${max}`)
  }
  return value
}

const ms = (t: number | Date): number => (t instanceof Date ? t.getTime() : t)

/** Validate options against the manifest; nothing is read before this passes. */
export function normalizeIterOptions(
  manifest: Manifest,
  manifestCid: string,
  options: IterOptions,
): ResumeState {
  const known = [...manifest.schema.fields.map((f) => f.name), ...manifest.layers.map((l) => l.name)]
  const fields = options.fields ?? manifest.schema.fields.map((f) => f.name)
  if (!Array.isArray(fields) || fields.length === 0)
    throw new InvalidOptionError('fields', fields, 'name at least one field')
  for (const field of fields) if (!known.includes(field)) throw new UnknownFieldError(field, known)
  const batchSize = integer('batchSize', options.batchSize ?? 256, 1)
  const numWorkers = integer('numWorkers', options.numWorkers ?? 1, 1)
  const worldSize = integer('worldSize', options.worldSize ?? 1, 1)
  const state: ResumeState = {
    format: 'dreamdb.resume/1',
    manifest: manifestCid,
    batchSize,
    fields: [...fields],
    shuffleSeed:
      options.shuffleSeed === undefined ? null : integer('shuffleSeed', options.shuffleSeed, 0, 2 ** 32 - 1),
    epoch: integer('epoch', options.epoch ?? 0, 0),
    rank: integer('rank', options.rank ?? 0, 0, worldSize - 1),
    worldSize,
    worker: integer('worker', options.worker ?? 0, 0, numWorkers - 1),
    numWorkers,
    timeRange: null,
    nextBatch: 0,
  }
  if (options.timeRange !== undefined) {
    const [from, to] = options.timeRange.map(ms) as [number, number]
    if (!Number.isFinite(from) || !Number.isFinite(to) || from > to) {
      throw new InvalidOptionError('timeRange', options.timeRange, 'must be [start, end] with start <= end')
    }
    state.timeRange = [from, to]
  }
  if (options.batchRange !== undefined) {
    const range = options.batchRange
    if (!Array.isArray(range) || range.length !== 2)
      throw new InvalidOptionError('batchRange', range, 'must be [start, end]')
    const start = integer('batchRange[0]', range[0], 0)
    const end = integer('batchRange[1]', range[1], start)
    if (state.numWorkers !== 1 || state.worldSize !== 1)
      throw new InvalidOptionError(
        'batchRange',
        range,
        'replaces worker and rank partitioning; leave them at 0 of 1',
      )
    state.batchRange = [start, end]
  }
  const resume = options.resumeFrom
  if (resume !== undefined) {
    if (resume?.format !== 'dreamdb.resume/1')
      throw new ResumeMismatchError('format', 'dreamdb.resume/1', resume?.format)
    for (const key of [
      'manifest',
      'batchSize',
      'shuffleSeed',
      'epoch',
      'rank',
      'worldSize',
      'worker',
      'numWorkers',
    ] as const) {
      if (resume[key] !== state[key]) throw new ResumeMismatchError(key, state[key], resume[key])
    }
    if (JSON.stringify(resume.fields) !== JSON.stringify(state.fields)) {
      throw new ResumeMismatchError('fields', state.fields, resume.fields)
    }
    if (JSON.stringify(resume.timeRange) !== JSON.stringify(state.timeRange)) {
      throw new ResumeMismatchError('timeRange', state.timeRange, resume.timeRange)
    }
    if (JSON.stringify(resume.batchRange ?? null) !== JSON.stringify(state.batchRange ?? null)) {
      throw new ResumeMismatchError('batchRange', state.batchRange ?? null, resume.batchRange ?? null)
    }
    state.nextBatch = integer('resumeFrom.nextBatch', resume.nextBatch, 0)
  }
  return state
}

/** A window's records, decoded: per field, a way to take rows in any order. */
interface WindowData {
  anchors: BigUint64Array
  /** For each base field, one column per bucket, and the bucket/row of each window record. */
  columns: Record<string, (Vector | null)[]>
  bucketOf: Uint32Array
  rowOf: Uint32Array
  /** Window offset of each bucket's first record, plus the window's length at the end. */
  bucketStart: Uint32Array
  order: Uint32Array | null
}

async function loadWindow(
  store: Store,
  window: Window,
  baseFields: Field[],
  codecs: Codecs,
  signal: AbortSignal | undefined,
): Promise<WindowData> {
  const decoded = await Promise.all(
    window.buckets.map((bucket) =>
      readBucketColumns(store, baseFields, bucket, { codecs, ...(signal ? { signal } : {}) }),
    ),
  )
  const anchors = new BigUint64Array(window.records)
  const bucketOf = new Uint32Array(window.records)
  const rowOf = new Uint32Array(window.records)
  const bucketStart = new Uint32Array(window.buckets.length + 1)
  let at = 0
  window.buckets.forEach((bucket, b) => {
    bucketStart[b] = at
    anchors.set(anchorsOf(bucket), at)
    for (let r = 0; r < bucket.records; r++) {
      bucketOf[at + r] = b
      rowOf[at + r] = r
    }
    at += bucket.records
  })
  const columns: WindowData['columns'] = {}
  for (const field of baseFields) columns[field.name] = decoded.map((d) => d[field.name] ?? null)
  bucketStart[window.buckets.length] = at
  return {
    anchors,
    columns,
    bucketOf,
    rowOf,
    bucketStart,
    order: window.seed === null ? null : permutation(window.records, window.seed),
  }
}

/**
 * One Arrow type per field for the whole iteration (a dictionary type made per batch would
 * get a new dictionary id each time, and batches could not be put in one Table), and the
 * iteration's interned categorical strings.
 */
interface BatchContext {
  types: Map<string, DataType>
  interner: Interner
}

/** A stretch of a window in the epoch's order: its positions [from, to). */
interface Run {
  data: WindowData
  from: number
  to: number
}

function lengthOf(runs: Run[]): number {
  return runs.reduce((n, r) => n + r.to - r.from, 0)
}

/** Call `fn(data, i, k)` for each record: `i` its index in the window, `k` its row in the batch. */
function forEachRecord(runs: Run[], fn: (data: WindowData, i: number, k: number) => void): void {
  let k = 0
  for (const { data, from, to } of runs) {
    for (let p = from; p < to; p++) fn(data, data.order === null ? p : data.order[p]!, k++)
  }
}

/**
 * Call `fn(data, bucket, row, count, k)` for each stretch of consecutive rows of one bucket:
 * whole blocks in append order, single rows once shuffled.
 */
function forEachBlock(
  runs: Run[],
  fn: (data: WindowData, bucket: number, row: number, count: number, k: number) => void,
): void {
  let k = 0
  for (const { data, from, to } of runs) {
    if (data.order !== null) {
      for (let p = from; p < to; p++) {
        const i = data.order[p]!
        fn(data, data.bucketOf[i]!, data.rowOf[i]!, 1, k++)
      }
      continue
    }
    for (let p = from; p < to; ) {
      const bucket = data.bucketOf[p]!
      const count = Math.min(to, data.bucketStart[bucket + 1]!) - p
      fn(data, bucket, data.rowOf[p]!, count, k)
      k += count
      p += count
    }
  }
}

/**
 * An in-order batch that lies inside one bucket, as a view of the bytes as read: nothing is
 * copied. `null` when the batch spans buckets or is shuffled (then it is gathered).
 */
function sharedColumn(field: Field, runs: Run[]): Vector | null {
  if (field.family !== 'embedding' && field.family !== 'binary') return null
  if (runs.some(({ data }) => data.order !== null)) return null // shuffled: never one block
  let block: { data: WindowData; bucket: number; row: number; count: number } | undefined
  let blocks = 0
  forEachBlock(runs, (data, bucket, row, count) => {
    block = { data, bucket, row, count }
    blocks++
  })
  if (blocks !== 1 || block === undefined) return null
  const { data, bucket, row, count } = block
  const stored = data.columns[field.name]![bucket]
  if (stored === null || stored === undefined || stored.data.length !== 1) return null
  const at = stored.data[0]!.offset + row
  if (field.family === 'embedding') {
    const child = stored.data[0]!.children[0]!
    const start = at * field.dim + child.offset
    return embeddingColumn(field, (child.values as Float32Array).subarray(start, start + count * field.dim))
  }
  // Arrow offsets may start anywhere in the data, so the batch shares the fragment's bytes.
  return makeVector(
    makeData({
      type: new Binary(),
      length: count,
      nullCount: 0,
      valueOffsets: stored.data[0]!.valueOffsets.subarray(at, at + count + 1),
      data: stored.data[0]!.values,
    }),
  )
}

/**
 * The vectors of a batch, copied into one buffer: whole blocks in append order, one vector
 * at a time once shuffled (measured: a view and `set` beat an element loop by 20%).
 */
function gatherVectors(field: EmbeddingField, runs: Run[], length: number): Float32Array {
  const dim = field.dim
  const flat = new Float32Array(length * dim)
  let k = 0
  for (const { data, from, to } of runs) {
    // Each bucket's stored values and the position of its first vector in them.
    const stored = data.columns[field.name]!.map((vector) => {
      if (vector === null) return null
      const child = vector.data[0]!.children[0]!
      return { values: child.values as Float32Array, base: vector.data[0]!.offset * dim + child.offset }
    })
    for (let p = from; p < to; p++, k++) {
      const i = data.order === null ? p : data.order[p]!
      const source = stored[data.bucketOf[i]!]
      if (source === null || source === undefined) continue
      const { values } = source
      if (data.order === null) {
        // In append order the rest of this bucket's rows follow: one copy for all of them.
        const count = Math.min(to, data.bucketStart[data.bucketOf[i]! + 1]!) - p
        const start = source.base + data.rowOf[i]! * dim
        flat.set(values.subarray(start, start + count * dim), k * dim)
        p += count - 1
        k += count - 1
        continue
      }
      const start = source.base + data.rowOf[i]! * dim
      flat.set(values.subarray(start, start + dim), k * dim)
    }
  }
  return flat
}

/**
 * The validity of a batch's values of a field: a record of a bucket written before the field
 * existed has no value (null), not a zero vector or empty bytes.
 */
function missing(field: Field, runs: Run[], length: number): { bitmap: Uint8Array; count: number } {
  const bitmap = new Uint8Array(Math.ceil(length / 8)).fill(0xff)
  let count = 0
  if (runs.every(({ data }) => !data.columns[field.name]!.includes(null))) return { bitmap, count }
  forEachBlock(runs, (data, bucket, _row, blockLength, k) => {
    if (data.columns[field.name]![bucket] !== null) return
    for (let r = k; r < k + blockLength; r++) bitmap[r >> 3]! &= ~(1 << (r & 7))
    count += blockLength
  })
  return { bitmap, count }
}

/** Build one column from runs that may span windows and buckets. */
function gather(field: Field, runs: Run[], context: BatchContext): Vector {
  const shared = sharedColumn(field, runs)
  if (shared !== null) return shared
  const length = lengthOf(runs)
  const columnOf = (data: WindowData, bucket: number) => data.columns[field.name]![bucket] ?? null
  if (field.family === 'embedding') {
    return embeddingColumn(field, gatherVectors(field, runs, length), missing(field, runs, length))
  }
  if (field.family === 'binary') {
    const pieces: Uint8Array[] = new Array(length)
    forEachRecord(runs, (data, i, k) => {
      pieces[k] =
        (columnOf(data, data.bucketOf[i]!)?.get(data.rowOf[i]!) as Uint8Array | null) ?? new Uint8Array(0)
    })
    const offsets = new Int32Array(length + 1)
    for (let k = 0; k < length; k++) offsets[k + 1] = offsets[k]! + pieces[k]!.byteLength
    const bytes = new Uint8Array(offsets[length]!)
    for (let k = 0; k < length; k++) bytes.set(pieces[k]!, offsets[k]!)
    const nulls = missing(field, runs, length)
    return makeVector(
      makeData({
        type: new Binary(),
        length,
        nullCount: nulls.count,
        ...(nulls.count > 0 ? { nullBitmap: nulls.bitmap } : {}),
        valueOffsets: offsets,
        data: bytes,
      }),
    )
  }
  if (field.family === 'scalar' && field.kind === 'categorical')
    return gatherCategorical(field.name, runs, length, context)
  const values: unknown[] = new Array(length)
  forEachRecord(runs, (data, i, k) => {
    values[k] = columnOf(data, data.bucketOf[i]!)?.get(data.rowOf[i]!) ?? null
  })
  return vectorFromArray(values, context.types.get(field.name)!)
}

/**
 * Interns the strings of stored dictionaries for one iteration: each bucket's dictionary is
 * mapped once to ids shared by every bucket, so gathering a row is an integer lookup.
 */
class Interner {
  readonly #tables = new WeakMap<object, Int32Array>()
  readonly strings: string[] = []
  readonly #ids = new Map<string, number>()
  #dictionary: Vector | undefined

  idsOf(dictionary: Vector): Int32Array {
    let table = this.#tables.get(dictionary)
    if (table === undefined) {
      table = new Int32Array(dictionary.length)
      for (let k = 0; k < dictionary.length; k++) {
        const value = dictionary.get(k) as string
        let id = this.#ids.get(value)
        if (id === undefined) {
          id = this.strings.length
          this.strings.push(value)
          this.#ids.set(value, id)
        }
        table[k] = id
      }
      this.#tables.set(dictionary, table)
    }
    return table
  }

  /** Every string interned so far, as one vector, rebuilt only when a new one arrives. */
  dictionary(): Vector {
    if (this.#dictionary === undefined || this.#dictionary.length !== this.strings.length) {
      this.#dictionary = vectorFromArray(this.strings, new Utf8())
    }
    return this.#dictionary
  }
}

/**
 * Up to this many distinct values, a categorical batch carries every value seen so far as
 * its dictionary (one vector shared by the batches, built once) and the ids stay the same
 * from batch to batch; beyond it (ids, captions) each batch carries just the values it uses.
 */
const SHARED_DICTIONARY_MAX = 65_536

/** A categorical column gathered by index: each bucket's dictionary is interned once. */
function gatherCategorical(name: string, runs: Run[], length: number, context: BatchContext): Vector {
  const ids = new Int32Array(length)
  const nulls = new Uint8Array(Math.ceil(length / 8)).fill(0xff)
  let nullCount = 0
  forEachRecord(runs, (window, i, k) => {
    const vector = window.columns[name]![window.bucketOf[i]!]
    const row = window.rowOf[i]!
    if (vector === null || vector === undefined || !vector.isValid(row)) {
      nulls[k >> 3]! &= ~(1 << (k & 7))
      nullCount++
      return
    }
    const data = vector.data[0]!
    ids[k] = context.interner.idsOf(data.dictionary!)[(data.values as Int32Array)[data.offset + row]!]!
  })
  let dictionary: Vector
  if (context.interner.strings.length <= SHARED_DICTIONARY_MAX) {
    dictionary = context.interner.dictionary()
  } else {
    const batchIndex = new Map<number, number>()
    const values: string[] = []
    for (let k = 0; k < length; k++) {
      if (nullCount > 0 && (nulls[k >> 3]! & (1 << (k & 7))) === 0) continue
      let index = batchIndex.get(ids[k]!)
      if (index === undefined) {
        index = values.length
        values.push(context.interner.strings[ids[k]!]!)
        batchIndex.set(ids[k]!, index)
      }
      ids[k] = index
    }
    dictionary = vectorFromArray(values, new Utf8())
  }
  const type = context.types.get(name) as Dictionary<Utf8, Int32>
  return makeVector(
    makeData({
      type,
      length,
      nullCount,
      ...(nullCount > 0 ? { nullBitmap: nulls } : {}),
      data: ids,
      dictionary,
    }),
  )
}

/** Every value of a layer, keyed by anchor, read once per iteration. */
export async function loadLayer(
  repo: Repository,
  layer: Layer,
  signal?: AbortSignal,
  codecs?: Codecs,
): Promise<Map<bigint, unknown>> {
  const values = new Map<bigint, unknown>()
  const manifestLike = { timeline: layer.segments } as Manifest
  for await (const { bucket } of repo.buckets(manifestLike, signal ? { signal } : {})) {
    const segment = await readLayerSegment(repo.store, layer.field, bucket, {
      ...(signal ? { signal } : {}),
      ...(codecs ? { codecs } : {}),
    })
    segment.anchors.forEach((anchor, i) => {
      const value = segment.values.get(i)
      values.set(anchor, value instanceof Float32Array ? Float32Array.from(value) : value)
    })
  }
  return values
}

function layerColumn(
  layer: Layer,
  values: Map<bigint, unknown>,
  anchors: bigint[],
  context: BatchContext,
): Vector {
  const picked = anchors.map((a) => values.get(a) ?? null)
  if (layer.field.family === 'embedding') {
    return vectorFromArray(
      picked.map((v) => (v === null ? null : [...(v as Float32Array)])),
      context.types.get(layer.name)!,
    )
  }
  return vectorFromArray(picked, context.types.get(layer.name)!)
}

/** The iteration itself: plan, prefetch windows, gather batches, pad the partition. */
export function iterate(
  repo: Repository,
  manifest: Manifest,
  state: ResumeState,
  options: { windowRecords: number; prefetch: number; codecs: () => Promise<Codecs>; signal?: AbortSignal },
): BatchStream {
  let yielded = state.nextBatch
  const snapshotState = (): ResumeState => ({ ...state, fields: [...state.fields], nextBatch: yielded })
  async function* run(): AsyncGenerator<RecordBatch> {
    const { signal } = options
    const baseFields = manifest.schema.fields.filter((f) => state.fields.includes(f.name))
    const layers = manifest.layers.filter((l) => state.fields.includes(l.name))
    const context: BatchContext = {
      types: new Map([...baseFields, ...layers.map((l) => l.field)].map((f) => [f.name, arrowTypeOf(f)])),
      interner: new Interner(),
    }
    const codecs = await options.codecs()
    const layerValues = new Map<string, Map<bigint, unknown>>()
    for (const layer of layers) layerValues.set(layer.name, await loadLayer(repo, layer, signal, codecs))

    const tMin = state.timeRange?.[0] ?? Number.NEGATIVE_INFINITY
    const tMax = state.timeRange?.[1] ?? Number.POSITIVE_INFINITY
    const inRange = (b: Bucket) => !(b.timeMax < tMin || b.timeMin > tMax)
    const walk = {
      ...(signal ? { signal } : {}),
      ...(state.timeRange ? { timeMin: tMin, timeMax: tMax } : {}),
    }
    // Units from the leaves' summaries; only a leaf straddling the time range is read now.
    const units: Omit<Unit, 'start'>[] = []
    for await (const { leaf } of repo.leaves(manifest, walk)) {
      if (leaf.timeMin >= tMin && leaf.timeMax <= tMax) {
        units.push({ node: leaf.node, records: leaf.records })
        continue
      }
      // Given the summary, the leaf is checked against it (IntegrityError when they differ).
      const buckets = (await repo.leafBuckets(leaf, walk)).filter(inRange)
      const records = buckets.reduce((n, b) => n + b.records, 0)
      if (records > 0) units.push({ node: leaf.node, records, buckets })
    }
    const planOptions = {
      batchSize: state.batchSize,
      shuffleSeed: state.shuffleSeed,
      epoch: state.epoch,
      manifest: state.manifest,
      partition: state.rank * state.numWorkers + state.worker,
      partitions: state.worldSize * state.numWorkers,
      windowRecords: options.windowRecords,
    }
    const partitionPlan: Plan = buildPlan(units, planOptions)
    const range = state.batchRange
    const plan: Plan =
      range === null || range === undefined
        ? partitionPlan
        : {
            ...partitionPlan,
            firstBatch: range[0],
            endBatch: Math.max(range[0], Math.min(range[1], partitionPlan.batches)),
            batchesPerPartition: range[1] - range[0],
          }
    if (yielded > plan.batchesPerPartition) {
      throw new InvalidOptionError(
        'resumeFrom.nextBatch',
        yielded,
        `this partition has ${plan.batchesPerPartition} batches`,
      )
    }
    const fromRecord = (plan.firstBatch + yielded) * state.batchSize
    const toRecord = Math.min(plan.records, plan.endBatch * state.batchSize)

    // The windows this partition needs, in order; a unit's buckets are read when reached.
    async function* windows(): AsyncGenerator<Window> {
      for (const unit of plan.units) {
        if (unit.start + unit.records <= fromRecord) continue
        if (unit.start >= toRecord) return
        const buckets = unit.buckets ?? (await repo.leafBuckets(unit.node, walk))
        for (const window of windowsOf(unit, buckets, planOptions)) {
          if (window.start + window.records <= fromRecord) continue
          if (window.start >= toRecord) return
          yield window
        }
      }
    }
    // Windows are fetched `prefetch` ahead of the one being consumed; until the first one
    // is in hand it is fetched alone, so the first batch does not share the CPU with them.
    const upcoming = windows()
    const queue: { window: Window; data: Promise<WindowData> }[] = []
    let exhausted = false
    let ahead = 0
    const fill = async (): Promise<void> => {
      while (!exhausted && queue.length <= ahead) {
        const next = await upcoming.next()
        if (next.done) {
          exhausted = true
          return
        }
        const data = loadWindow(repo.store, next.value, baseFields, codecs, signal)
        data.catch(() => {})
        queue.push({ window: next.value, data })
      }
    }

    for (let b = plan.firstBatch + yielded; b < plan.endBatch; b++) {
      signal?.throwIfAborted()
      const from = b * state.batchSize
      const to = Math.min(plan.records, from + state.batchSize)
      const runs: Run[] = []
      for (let at = from, k = 0; at < to; k++) {
        await fill()
        while (queue.length > 0 && queue[0]!.window.start + queue[0]!.window.records <= at) queue.shift()
        if (k >= queue.length) await fill()
        const entry = queue.find((q) => q.window.start <= at && at < q.window.start + q.window.records)
        if (entry === undefined) throw new Error(`record ${at} of the epoch is in no window`)
        const data = await entry.data
        if (ahead < options.prefetch) {
          ahead = options.prefetch
          await fill()
        }
        const end = Math.min(to, entry.window.start + entry.window.records)
        runs.push({ data, from: at - entry.window.start, to: end - entry.window.start })
        at = end
      }
      const batch = buildBatch(runs, baseFields, layers, layerValues, state.fields, context)
      // Counted before it is handed over: a consumer that stops after this batch has seen it.
      yielded++
      yield batch
    }
    while (yielded < plan.batchesPerPartition) {
      yielded++
      yield buildBatch([], baseFields, layers, layerValues, state.fields, context)
    }
  }
  return { [Symbol.asyncIterator]: run, state: snapshotState }
}

function buildBatch(
  runs: Run[],
  baseFields: Field[],
  layers: Layer[],
  layerValues: Map<string, Map<bigint, unknown>>,
  order: string[],
  context: BatchContext,
): RecordBatch {
  const anchorValues = new BigUint64Array(lengthOf(runs))
  forEachBlock(runs, (data, bucket, row, count, k) => {
    const start = data.bucketStart[bucket]! + row
    anchorValues.set(data.anchors.subarray(start, start + count), k)
  })
  // Plain bigints only when a layer needs to look values up by anchor.
  const anchors = layers.length > 0 ? Array.from(anchorValues) : []
  const columns: Record<string, Vector> = { _anchor: anchorColumn(anchorValues) }
  for (const name of order) {
    const field = baseFields.find((f) => f.name === name)
    columns[name] =
      field !== undefined
        ? gather(field, runs, context)
        : layerColumn(layers.find((l) => l.name === name)!, layerValues.get(name)!, anchors, context)
  }
  const table = new ArrowTable(columns)
  return table.batches[0]!
}
