import {
  anchorsOf,
  BatchGatherer,
  Blocks,
  type Codecs,
  isCompressed,
  permuteCategorical,
  permuteVectorsAside,
  permuteVectorsInPlace,
  permuteWordsInPlace,
  readBucketColumns,
  readLayerSegment,
} from '@dreamdb/arrow'
import {
  BufferPool,
  type ReadBuffers,
  type RowGroup,
  type RowOrder,
  readThreadsForWork,
  type Store,
} from '@dreamdb/cas'
import type { Bucket, Field, FieldObject, Layer, Manifest, Repository } from '@dreamdb/manifest'
import type { RecordBatch, Vector } from 'apache-arrow'
import type { CID } from 'multiformats/cid'
import { InvalidOptionError, ResumeMismatchError, UnknownFieldError } from './errors.js'
import { buildPlan, type Plan, type Unit, type Window, windowOrder, windowsOf } from './plan.js'

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
  /**
   * A shuffled batch is a uniformly random subset of its window whose rows come in source
   * order (append order within a bucket), so that the rows can be put in place as they are
   * read (design/0005). With this, rows come in source order only within runs of this
   * many records on the epoch's grid (each run, too, a random subset of the window): a
   * loader that asks for k batches at once and cuts them passes its own batch size, and
   * the pieces are the batches it would have got one at a time. To shuffle the rows of a
   * batch among themselves, index it with a random permutation (e.g.
   * `x[torch.randperm(len(x))]`). @default batchSize
   */
  sourceOrderRecords?: number
  /** Windows fetched ahead while the consumer works. @default 2 */
  prefetch?: number
  /**
   * Reuse the buffers of object reads instead of allocating one per object, for a consumer
   * that is done with each batch when it asks for the next (copies it out, or trains on it
   * and drops it): **a batch is valid only until the next one is asked for or the loop
   * ends**; after that its memory is overwritten by later reads (a batch kept longer shows
   * other records' values; copy what you keep with `slice()`: `structuredClone` and
   * `postMessage` share a view of shared memory instead of copying it). The buffers of
   * windows already consumed go to a bounded pool (`true`: the process's own, shared by its
   * iterations, up to 256 MiB of spares, dropped 10 s after the last iteration ends; or pass
   * a `BufferPool`) and the next reads fill them in
   * place (SharedArrayBuffers, filled by the read threads), so the garbage collector has no
   * 16 MiB objects to chase. Every object is still verified. Off by default: batches stay
   * valid for ever.
   */
  recycleBuffers?: boolean | BufferPool
  signal?: AbortSignal | undefined
}

/**
 * The pool behind `recycleBuffers: true`, one per process, shared by its iterations one
 * after another (epochs) or at once. A pool per iteration made every epoch allocate its
 * buffers anew, and each buffer a read thread once filled stays alive until that thread's
 * own garbage collection, which its small heap rarely needs: peak RSS grew by 30-45 MB a
 * pass (1M x 128-d: 200 -> 440 MB over 8 passes; with one pool, flat at 226 MB). Its
 * spares are dropped once no iteration has used it for RECYCLE_IDLE_MS.
 */
let recyclePool: BufferPool | undefined
let recycleUsers = 0
let recycleIdle: ReturnType<typeof setTimeout> | undefined
const RECYCLE_IDLE_MS = 10_000

function acquireRecyclePool(): BufferPool {
  clearTimeout(recycleIdle)
  recycleIdle = undefined
  recycleUsers++
  recyclePool ??= new BufferPool()
  return recyclePool
}

function releaseRecyclePool(): void {
  recycleUsers--
  if (recycleUsers > 0) return
  recycleIdle = setTimeout(() => {
    recyclePool?.clear()
    recyclePool = undefined
  }, RECYCLE_IDLE_MS)
  recycleIdle.unref()
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
  /** `sourceOrderRecords` when given, else null (a shuffled batch's rows in source order). */
  sourceOrderRecords?: number | null
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
  if (options.sourceOrderRecords !== undefined)
    state.sourceOrderRecords = integer('sourceOrderRecords', options.sourceOrderRecords, 1)
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
    if ((resume.sourceOrderRecords ?? null) !== (state.sourceOrderRecords ?? null)) {
      throw new ResumeMismatchError(
        'sourceOrderRecords',
        state.sourceOrderRecords ?? null,
        resume.sourceOrderRecords ?? null,
      )
    }
    state.nextBatch = integer('resumeFrom.nextBatch', resume.nextBatch, 0)
  }
  return state
}

/** A window's records, decoded: per field, a way to take rows in any order. */
interface WindowData {
  /** Each bucket's anchors, in record order. */
  anchors: BigUint64Array[]
  /** For each base field, one column per bucket (null: the bucket predates the field). */
  columns: Record<string, (Vector | null)[]>
  /** The bucket and row of each window record. */
  bucketOf: Uint32Array
  rowOf: Uint32Array
  /** Window offset of each bucket's first record, plus the window's length at the end. */
  bucketStart: Uint32Array
  order: Uint32Array | null
  /**
   * Fields whose rows were already put in the window's shuffled order (embeddings, moved in
   * place once per window): their batches take window positions as they are, and a batch
   * inside one bucket is a view, as in order.
   */
  inWindowOrder: Set<string>
  /**
   * Where each window position of those fields lives, as an index into the window's buckets
   * one after another (`bucketOf`/`rowOf` of that index), when not at its own index: a
   * window of several buckets is laid out so that each batch's positions are consecutive
   * rows of one bucket (`layoutOf`), and the batch is a view.
   */
  slot: Uint32Array | null
}

/**
 * A layout of a shuffled window's positions over its buckets in which no batch crosses from
 * one bucket's buffer to the next, or `null` (the identity: position p at index p) when the
 * window is one bucket, when no batch crosses anyway, or when the stretches do not fit.
 *
 * The epoch's batches cut the window into stretches (at every multiple of `batchSize` of
 * the epoch's record offset); each stretch, in order, goes to the first bucket with room
 * for all of it, filled from its first row. Measured on shuffled passes over 100k x 512-d
 * (8 192-record buckets, two a window): 4-9 of 25 batches a pass were gathered into a new
 * 8 MiB buffer each, 1-4 after it (those spanning two windows). Only where rows live
 * changes, not which record a batch holds, so the order and resume states are the same.
 */
export function layoutOf(
  bucketStart: Uint32Array,
  windowStart: number,
  batchSize: number,
): Uint32Array | null {
  const buckets = bucketStart.length - 1
  const records = bucketStart[buckets]!
  if (buckets < 2) return null
  const stretches: [from: number, to: number][] = []
  for (let p = 0; p < records; ) {
    const end = Math.min(records, p + batchSize - ((windowStart + p) % batchSize))
    stretches.push([p, end])
    p = end
  }
  // Nothing to do when every stretch already lies inside one bucket.
  let crossing = false
  for (const [from, to] of stretches) {
    let b = 0
    while (bucketStart[b + 1]! <= from) b++
    if (to > bucketStart[b + 1]!) crossing = true
  }
  if (!crossing) return null
  const filled = Uint32Array.from({ length: buckets }, (_, b) => bucketStart[b]!)
  const slot = new Uint32Array(records)
  for (const [from, to] of stretches) {
    let b = 0
    while (b < buckets && bucketStart[b + 1]! - filled[b]! < to - from) b++
    if (b === buckets) return null
    for (let p = from; p < to; p++) slot[p] = filled[b]! + (p - from)
    filled[b]! += to - from
  }
  return slot
}

/** `inWindowOrder`'s name for the anchors (no field's name: those cannot be empty). */
const ANCHORS = ''

/**
 * Bytes after an embedding object's rows: it is an Arrow IPC stream whose values buffer is
 * the last of its body, followed by the 8-byte end-of-stream marker. Checked after decoding
 * (`movedInPlace`); an object laid out otherwise is read again as it is.
 */
const IPC_TRAILER = 8

/** The one object a bucket's embedding field is read from, when its rows can be moved as read. */
function vectorsObject(field: Field, bucket: Bucket): FieldObject | undefined {
  if (field.family !== 'embedding') return undefined
  const key = isCompressed(field) ? `${field.name}/vectors` : field.name
  const own = Object.keys(bucket.fields).filter((k) => k === field.name || k.startsWith(`${field.name}/`))
  if (!own.includes(key) || (!isCompressed(field) && own.length !== 1)) return undefined
  return bucket.fields[key]
}

/**
 * Whether a moved field's decoded columns are the rows the read thread moved: each bucket's
 * vectors one Arrow buffer with no nulls, lying where `IPC_TRAILER` said. @internal
 */
export function movedInPlace(
  field: Field,
  columns: (Vector | null)[],
  buckets: Bucket[],
  movedAt: (number | undefined)[] = [],
): boolean {
  if (field.family !== 'embedding') return false
  return buckets.every((bucket, b) => {
    const source = columns[b] ?? null
    const object = vectorsObject(field, bucket)
    if (source === null || object === undefined || source.data.length !== 1 || source.nullCount > 0)
      return false
    const values = source.data[0]!.children[0]!.values as Float32Array
    const rows = bucket.records * field.dim * 4
    const at = object.bytes - IPC_TRAILER - rows
    // And where the store says the read thread took them to begin, when it says.
    return values.byteLength === rows && values.byteOffset === at && (movedAt[b] ?? at) === at
  })
}

async function loadWindow(
  store: Store,
  window: Window,
  baseFields: Field[],
  codecs: Codecs,
  signal: AbortSignal | undefined,
  buffers: ReadBuffers | undefined,
  threads: ReturnType<typeof readThreadsForWork>,
  batchSize: number,
  run: number,
  moveAsRead = true,
): Promise<WindowData> {
  const bucketOf = new Uint32Array(window.records)
  const rowOf = new Uint32Array(window.records)
  const bucketStart = new Uint32Array(window.buckets.length + 1)
  let at = 0
  window.buckets.forEach((bucket, b) => {
    bucketStart[b] = at
    for (let r = 0; r < bucket.records; r++) {
      bucketOf[at + r] = b
      rowOf[at + r] = r
    }
    at += bucket.records
  })
  bucketStart[window.buckets.length] = at
  const order =
    window.seed === null ? null : windowOrder(window.records, window.seed, window.start, batchSize, run)
  const slot = order === null ? null : layoutOf(bucketStart, window.start, batchSize)
  // The moves in index terms: index slot[p] takes the record of position p.
  let moves = order
  if (order !== null && slot !== null) {
    moves = new Uint32Array(order.length)
    for (let p = 0; p < order.length; p++) moves[slot[p]!] = order[p]!
  }
  // A shuffled window's embeddings are put in its order by the read thread that hashed
  // them, before they come here (one object per bucket, moved across the window's objects
  // once all of them matched their CIDs): the main thread no longer moves 1M random rows a
  // pass (1M x 128-d). Objects the store reads another way come back as read and are moved
  // below, as before.
  const stop = new AbortController()
  const orders = new Map<string, RowOrder>()
  const groups = new Map<string, { moved: number; at: (number | undefined)[] }>()
  if (moves !== null && moveAsRead) {
    const taken = new Set<string>()
    for (const field of baseFields) {
      const objects = window.buckets.map((bucket) => vectorsObject(field, bucket))
      if (field.family !== 'embedding' || objects.some((o) => o === undefined)) continue
      const cids = objects.map((o) => o!.cid.toString())
      // The same object twice (equal contents in two buckets or fields) cannot be two parts.
      if (new Set(cids).size !== cids.length || cids.some((c) => taken.has(c))) continue
      for (const c of cids) taken.add(c)
      const group: RowGroup = {
        counts: window.buckets.map((b) => b.records),
        rowBytes: field.dim * 4,
        trailer: IPC_TRAILER,
        bucketOf,
        rowOf,
        order: moves,
        signal: stop.signal,
      }
      const state = { moved: 0, at: [] as (number | undefined)[] }
      groups.set(field.name, state)
      cids.forEach((c, part) => {
        orders.set(c, {
          group,
          part,
          moved: (at) => {
            state.moved++
            state.at[part] = at
          },
        })
      })
    }
  }
  let decoded: Record<string, Vector>[]
  try {
    decoded = await Promise.all(
      window.buckets.map((bucket) =>
        readBucketColumns(store, baseFields, bucket, {
          codecs,
          ...(signal ? { signal } : {}),
          ...(buffers ? { buffers } : {}),
          ...(orders.size > 0 ? { rows: (cid: CID) => orders.get(cid.toString()) } : {}),
        }),
      ),
    )
  } catch (error) {
    // Rows moved by a read thread in objects that then did not decode: read as they are.
    if ([...groups.values()].some((g) => g.moved > 0) && !signal?.aborted)
      return loadWindow(store, window, baseFields, codecs, signal, buffers, threads, batchSize, run, false)
    throw error
  } finally {
    // Every get has settled: a group still waiting for a part that was never asked for lets go.
    stop.abort()
  }
  const columns: WindowData['columns'] = {}
  for (const field of baseFields) columns[field.name] = decoded.map((d) => d[field.name] ?? null)
  const anchors = window.buckets.map(anchorsOf)
  const inWindowOrder = new Set<string>()
  for (const [name, group] of groups) {
    if (group.moved === 0) continue
    const field = baseFields.find((f) => f.name === name)!
    // Moved where the rows were predicted to lie, or read again as they are.
    if (
      group.moved !== window.buckets.length ||
      !movedInPlace(field, columns[name]!, window.buckets, group.at)
    )
      return loadWindow(store, window, baseFields, codecs, signal, buffers, threads, batchSize, run, false)
    inWindowOrder.add(name)
  }
  if (moves !== null) {
    for (const field of baseFields) {
      if (field.family !== 'embedding' || inWindowOrder.has(field.name)) continue
      // Shared buffers (recycled reads) on a read thread where there is one, so the main
      // thread builds batches meanwhile; others here.
      const aside =
        threads !== undefined &&
        (await permuteVectorsAside(
          field,
          columns[field.name]!,
          bucketOf,
          rowOf,
          moves,
          // Without the signal: an abort must not settle the window (and give its buffers
          // back to the pool) while the thread is still moving rows in them.
          (permute) => threads.permuteRows(permute),
        ))
      if (aside || permuteVectorsInPlace(field.dim, columns[field.name]!, bucketOf, rowOf, moves))
        inWindowOrder.add(field.name)
    }
    // The anchors and the ids of a categorical field are moved once too, so a batch takes
    // them in blocks, not row by row (a window of several buckets: into new columns that
    // share one dictionary, `permuteCategorical`).
    permuteWordsInPlace(
      anchors.map((a) => new Uint32Array(a.buffer, a.byteOffset, a.length * 2)),
      2,
      bucketOf,
      rowOf,
      moves,
    )
    inWindowOrder.add(ANCHORS)
    for (const field of baseFields) {
      if (field.family !== 'scalar' || field.kind !== 'categorical') continue
      const moved = permuteCategorical(columns[field.name]!, bucketOf, rowOf, moves)
      if (moved === null) continue
      columns[field.name] = moved
      inWindowOrder.add(field.name)
    }
  }
  return {
    anchors,
    columns,
    bucketOf,
    rowOf,
    bucketStart,
    order,
    inWindowOrder,
    slot,
  }
}

/** A stretch of a window in the epoch's order: its positions [from, to). */
interface Run {
  data: WindowData
  from: number
  to: number
}

/**
 * The rows of a batch as blocks over the buckets of its runs (bucket `b` of the run's window
 * is source `b` plus the buckets of the runs before it): whole stretches of a bucket in
 * append order, one row at a time once shuffled, except for a field (`field`) that a
 * shuffled window already holds in its order.
 */
function blocksOf(runs: Run[], field?: string): Blocks {
  const blocks = new Blocks()
  let base = 0
  for (const { data, from, to } of runs) {
    if (data.order !== null && data.slot !== null && field !== undefined && data.inWindowOrder.has(field)) {
      for (let p = from; p < to; p++) {
        const i = data.slot[p]!
        blocks.push(base + data.bucketOf[i]!, data.rowOf[i]!, 1)
      }
    } else if (data.order === null || (field !== undefined && data.inWindowOrder.has(field))) {
      for (let p = from; p < to; ) {
        const bucket = data.bucketOf[p]!
        const count = Math.min(to, data.bucketStart[bucket + 1]!) - p
        blocks.push(base + bucket, data.rowOf[p]!, count)
        p += count
      }
    } else {
      for (let p = from; p < to; p++) {
        const i = data.order[p]!
        blocks.push(base + data.bucketOf[i]!, data.rowOf[i]!, 1)
      }
    }
    base += data.anchors.length
  }
  return blocks
}

/** A layer's values, kept as its segments decoded them, and where each anchor's value is. */
interface LayerValues {
  /** Each segment's values, then `null` (the source of an anchor the layer has no value for). */
  sources: (Vector | null)[]
  /** Anchor to its segment and row, packed as `segment * 2^32 + row`. */
  at: Map<bigint, number>
}

/** Every segment of a layer, read once per iteration; a later segment's anchor wins. */
async function loadLayerValues(
  repo: Repository,
  layer: Layer,
  signal?: AbortSignal,
  codecs?: Codecs,
): Promise<LayerValues> {
  const sources: (Vector | null)[] = []
  const at = new Map<bigint, number>()
  const manifestLike = { timeline: layer.segments } as Manifest
  for await (const { bucket } of repo.buckets(manifestLike, signal ? { signal } : {})) {
    const segment = await readLayerSegment(repo.store, layer.field, bucket, {
      ...(signal ? { signal } : {}),
      ...(codecs ? { codecs } : {}),
    })
    const base = sources.length * 2 ** 32
    segment.anchors.forEach((anchor, row) => {
      at.set(anchor, base + row)
    })
    sources.push(segment.values)
  }
  sources.push(null)
  return { sources, at }
}

/** Every value of a layer, keyed by anchor (for `compareRefs`). */
export async function loadLayer(
  repo: Repository,
  layer: Layer,
  signal?: AbortSignal,
  codecs?: Codecs,
): Promise<Map<bigint, unknown>> {
  const { sources, at } = await loadLayerValues(repo, layer, signal, codecs)
  const values = new Map<bigint, unknown>()
  for (const [anchor, packed] of at) {
    const value = sources[Math.floor(packed / 2 ** 32)]!.get(packed % 2 ** 32)
    values.set(anchor, value instanceof Float32Array ? Float32Array.from(value) : value)
  }
  return values
}

/** The rows of a layer's segments that hold the values of `anchors`, in that order. */
function layerBlocks(layer: LayerValues, anchors: BigUint64Array): Blocks {
  const blocks = new Blocks()
  const none = layer.sources.length - 1
  for (const anchor of anchors) {
    const packed = layer.at.get(anchor)
    if (packed === undefined) blocks.push(none, 0, 1)
    else blocks.push(Math.floor(packed / 2 ** 32), packed % 2 ** 32, 1)
  }
  return blocks
}

/** The iteration itself: plan, prefetch windows, gather batches, pad the partition. */
export function iterate(
  repo: Repository,
  manifest: Manifest,
  state: ResumeState,
  options: {
    windowRecords: number
    prefetch: number
    codecs: () => Promise<Codecs>
    signal?: AbortSignal
    recycleBuffers?: boolean | BufferPool | undefined
  },
): BatchStream {
  let yielded = state.nextBatch
  const snapshotState = (): ResumeState => ({ ...state, fields: [...state.fields], nextBatch: yielded })
  async function* run(): AsyncGenerator<RecordBatch> {
    const { signal } = options
    const baseFields = manifest.schema.fields.filter((f) => state.fields.includes(f.name))
    const layers = manifest.layers.filter((l) => state.fields.includes(l.name))
    const gatherer = new BatchGatherer([...baseFields, ...layers.map((l) => l.field)])
    const codecs = await options.codecs()
    const threads = readThreadsForWork()
    const layerValues = new Map<string, LayerValues>()
    for (const layer of layers)
      layerValues.set(layer.name, await loadLayerValues(repo, layer, signal, codecs))

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
    // With recycling, each window notes the buffers its objects were read into; once the
    // consumer has asked for a batch past the window, they go back to the pool.
    const pool =
      options.recycleBuffers instanceof BufferPool
        ? options.recycleBuffers
        : options.recycleBuffers === true
          ? acquireRecyclePool()
          : undefined
    type Entry = { window: Window; data: Promise<WindowData>; held: SharedArrayBuffer[]; settled: boolean }
    const queue: Entry[] = []
    const spanned: Entry[] = []
    const giveBack = (entry: Entry): void => {
      for (const buffer of entry.held.splice(0)) pool!.give(buffer)
    }
    const release = (entry: Entry): void => {
      if (pool === undefined) return
      // A window still loading gives its buffers back once its reads have settled.
      if (entry.settled) giveBack(entry)
      else
        void entry.data.then(
          () => giveBack(entry),
          () => giveBack(entry),
        )
    }
    let exhausted = false
    let ahead = 0
    const fill = async (): Promise<void> => {
      while (!exhausted && queue.length <= ahead) {
        const next = await upcoming.next()
        if (next.done) {
          exhausted = true
          return
        }
        const held: SharedArrayBuffer[] = []
        const buffers: ReadBuffers | undefined = pool && {
          take: (size) => pool.take(size),
          give: (buffer) => pool.give(buffer),
          hold: (buffer) => held.push(buffer),
          // The window's object sizes, so that an S3 GET takes a spare that fits.
          sizeOf: (cid) => {
            for (const bucket of next.value.buckets)
              for (const object of Object.values(bucket.fields))
                if (object.cid.toString() === cid) return object.bytes
            return undefined
          },
        }
        const data = loadWindow(
          repo.store,
          next.value,
          baseFields,
          codecs,
          signal,
          buffers,
          threads,
          state.batchSize,
          state.sourceOrderRecords ?? state.batchSize,
        )
        const entry: Entry = { window: next.value, data, held, settled: false }
        data.then(
          () => {
            entry.settled = true
          },
          () => {
            entry.settled = true
          },
        )
        queue.push(entry)
      }
    }
    try {
      for (let b = plan.firstBatch + yielded; b < plan.endBatch; b++) {
        signal?.throwIfAborted()
        const from = b * state.batchSize
        const to = Math.min(plan.records, from + state.batchSize)
        // The previous batch has been handed over and the consumer asked for this one: the
        // windows it spanned may be reused now, not earlier (while it was being built its
        // columns still pointed into their buffers).
        for (const entry of spanned.splice(0)) release(entry)
        const runs: Run[] = []
        for (let at = from; at < to; ) {
          // Windows this batch has passed leave the prefetch queue (so prefetching goes on
          // however many windows a batch spans) but keep their buffers until it is built.
          while (queue.length > 0 && queue[0]!.window.start + queue[0]!.window.records <= at)
            spanned.push(queue.shift()!)
          await fill()
          const entry = queue.find((q) => q.window.start <= at && at < q.window.start + q.window.records)
          if (entry === undefined) throw new Error(`record ${at} of the epoch is in no window`)
          // The first window is fetched alone, unless it is a shuffled window of several
          // buckets: one read thread reads all its embedding objects (it moves their rows
          // across each other), so the next window goes to another meanwhile instead of
          // waiting for the first to be in hand (issue #13: 100k x 512-d, two buckets a window).
          if (
            ahead === 0 &&
            options.prefetch > 0 &&
            threads !== undefined &&
            entry.window.seed !== null &&
            entry.window.buckets.length > 1
          ) {
            ahead = 1
            await fill()
          }
          const data = await entry.data
          if (ahead < options.prefetch) {
            ahead = options.prefetch
            await fill()
          }
          const end = Math.min(to, entry.window.start + entry.window.records)
          runs.push({ data, from: at - entry.window.start, to: end - entry.window.start })
          at = end
        }
        const batch = buildBatch(runs, baseFields, layers, layerValues, state.fields, gatherer)
        // Counted before it is handed over: a consumer that stops after this batch has seen it.
        yielded++
        yield batch
      }
      while (yielded < plan.batchesPerPartition) {
        yielded++
        yield buildBatch([], baseFields, layers, layerValues, state.fields, gatherer)
      }
    } finally {
      // The end of the loop (done, broken off, aborted): every window's buffers go back.
      for (const entry of [...spanned.splice(0), ...queue.splice(0)]) release(entry)
      if (options.recycleBuffers === true) releaseRecyclePool()
    }
  }
  return { [Symbol.asyncIterator]: run, state: snapshotState }
}

/** One batch: its rows located in the runs' buckets, then each field gathered from them. */
function buildBatch(
  runs: Run[],
  baseFields: Field[],
  layers: Layer[],
  layerValues: Map<string, LayerValues>,
  order: string[],
  gatherer: BatchGatherer,
): RecordBatch {
  // The record-by-record blocks of a shuffled batch cost a push per row: built only when a
  // field (or the anchors) is not already in its window's order.
  let plain: Blocks | undefined
  // The blocks of the fields a shuffled window holds in its order are the same for each of
  // them (anchors, embeddings, categorical ids): built once per batch, by which runs hold
  // the field in order, not once per field (a loop over the batch's rows each).
  const inOrder = new Map<string, Blocks>()
  const blocksFor = (name: string): Blocks => {
    if (!runs.some((r) => r.data.inWindowOrder.has(name))) {
      plain ??= blocksOf(runs)
      return plain
    }
    const key = runs.map((r) => (r.data.inWindowOrder.has(name) ? '1' : '0')).join('')
    let blocks = inOrder.get(key)
    if (blocks === undefined) {
      blocks = blocksOf(runs, name)
      inOrder.set(key, blocks)
    }
    return blocks
  }
  const anchors = gatherer.anchors(
    runs.flatMap((r) => r.data.anchors),
    blocksFor(ANCHORS),
  )
  const columns = order.map((name): [string, Vector] => {
    const field = baseFields.find((f) => f.name === name)
    if (field !== undefined) {
      return [
        name,
        gatherer.column(
          field,
          runs.flatMap((r) => r.data.columns[name]!),
          blocksFor(name),
        ),
      ]
    }
    const layer = layers.find((l) => l.name === name)!
    const values = layerValues.get(name)!
    return [name, gatherer.column(layer.field, values.sources, layerBlocks(values, anchors))]
  })
  return gatherer.batch(anchors, columns)
}
