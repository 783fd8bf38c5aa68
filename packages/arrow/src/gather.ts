/**
 * Building the columns of a batch out of columns already decoded, one per bucket (or layer
 * segment): the caller says which rows, in which order, and this module copies buffers.
 *
 * - A batch that lies inside one bucket shares the stored bytes of an embedding or binary
 *   column (a view, nothing copied).
 * - Otherwise embeddings and binary values are copied one block of consecutive rows at a
 *   time (`set` of a subarray), categorical values as integer ids through an interner, other
 *   scalars value by value.
 * - Buffers are indexed as Arrow JS keeps them: a sliced Data's values, value offsets and
 *   children are already sliced, and its `offset` applies to the validity bitmap alone.
 * - A row of a source that is `null` (a bucket written before its field existed, an anchor a
 *   layer has no value for) is null in the batch, not a zero vector or empty bytes.
 */
import { permuteRows, type RowPermutation } from '@dreamdb/cas'
import type { Field } from '@dreamdb/manifest'
import {
  Table as ArrowTable,
  Binary,
  type Data,
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
import { anchorColumn, arrowTypeOf, embeddingColumn } from './columns.js'

/**
 * The rows of a batch, in order, as blocks of consecutive rows of one source: block `b`
 * takes rows `[row[b], row[b] + count[b])` of source `source[b]`. Sources are indexes into
 * the list of columns (or anchor arrays) the batch is gathered from.
 */
export class Blocks {
  source = new Uint32Array(16)
  row = new Uint32Array(16)
  count = new Uint32Array(16)
  /** Blocks in use. */
  length = 0
  /** Rows in all blocks. */
  rows = 0

  /** Append rows `[row, row + count)` of `source`; a block that continues the last one extends it. */
  push(source: number, row: number, count: number): void {
    if (count === 0) return
    const last = this.length - 1
    this.rows += count
    if (last >= 0 && this.source[last] === source && this.row[last]! + this.count[last]! === row) {
      this.count[last]! += count
      return
    }
    if (this.length === this.source.length) {
      const grow = (a: Uint32Array) => {
        const out = new Uint32Array(a.length * 2)
        out.set(a)
        return out
      }
      this.source = grow(this.source)
      this.row = grow(this.row)
      this.count = grow(this.count)
    }
    this.source[this.length] = source
    this.row[this.length] = row
    this.count[this.length] = count
    this.length++
  }
}

/**
 * Up to this many distinct values, a categorical batch carries every value seen so far as
 * its dictionary (one vector shared by the batches, built once) and the ids stay the same
 * from batch to batch; beyond it (ids, captions) each batch carries just the values it uses.
 */
const SHARED_DICTIONARY_MAX = 65_536

/**
 * Gathers the batches of one iteration. It holds one Arrow type per field (a dictionary
 * type made per batch would get a new dictionary id each time, and the batches could not
 * be put in one Table) and the iteration's interned categorical strings.
 */
export class BatchGatherer {
  readonly #types = new Map<string, DataType>()
  readonly #interner = new Interner()

  constructor(fields: readonly Field[]) {
    for (const field of fields) this.#types.set(field.name, arrowTypeOf(field))
  }

  /**
   * One field's column for a batch: the rows `blocks` names, taken from `sources`, that
   * field's decoded column of each source (`null` where a source has no value for it).
   */
  column(field: Field, sources: readonly (Vector | null)[], blocks: Blocks): Vector {
    const type = this.#types.get(field.name)
    if (type === undefined) throw new RangeError(`field '${field.name}' is not one of this iteration's`)
    // A binary column of several fragments is one chunk per fragment: each chunk becomes a
    // source of its own, so a batch inside one fragment is still a view of it.
    if (field.family === 'binary' && sources.some((v) => v !== null && v.data.length > 1)) {
      const split = splitChunks(sources, blocks)
      return gatherBinary(split.sources, split.blocks)
    }
    const chunks = sources.map((v) => (v === null ? null : v.data.length === 1 ? v.data[0]! : undefined))
    // A source of several chunks (none that this package decodes) takes the value-by-value path.
    if (chunks.includes(undefined)) return this.#values(type, sources, blocks)
    const data = chunks as (Data | null)[]
    if (field.family === 'embedding') {
      const shared =
        blocks.length === 1 ? sharedVectors(field.dim, data[blocks.source[0]!] ?? null, blocks) : null
      if (shared !== null) return embeddingColumn(field, shared)
      return embeddingColumn(field, gatherVectors(field.dim, data, blocks), missing(data, blocks))
    }
    if (field.family === 'binary') return gatherBinary(data, blocks)
    if (field.family === 'scalar' && field.kind === 'categorical')
      return this.#categorical(type, data, blocks)
    return this.#values(type, sources, blocks)
  }

  /** The anchors of a batch's rows: `sources[s]` holds the anchors of source `s`'s rows. */
  anchors(sources: readonly BigUint64Array[], blocks: Blocks): BigUint64Array {
    const out = new BigUint64Array(blocks.rows)
    // A shuffled batch is a block per row: those are copied as two 32-bit halves, with
    // neither a subarray nor a bigint per row.
    const halves = new Uint32Array(out.buffer)
    const sourceHalves: (Uint32Array | undefined)[] = new Array(sources.length)
    for (let b = 0, k = 0; b < blocks.length; b++) {
      const s = blocks.source[b]!
      const row = blocks.row[b]!
      const count = blocks.count[b]!
      if (count === 1) {
        let from = sourceHalves[s]
        if (from === undefined) {
          const source = sources[s]!
          from = sourceHalves[s] = new Uint32Array(source.buffer, source.byteOffset, source.length * 2)
        }
        halves[2 * k] = from[2 * row]!
        halves[2 * k + 1] = from[2 * row + 1]!
      } else out.set(sources[s]!.subarray(row, row + count), k)
      k += count
    }
    return out
  }

  /** The batch of `columns` (in that order) after `_anchor`. */
  batch(anchors: BigUint64Array, columns: readonly [name: string, column: Vector][]): RecordBatch {
    const table = new ArrowTable({ _anchor: anchorColumn(anchors), ...Object.fromEntries(columns) })
    return table.batches[0]!
  }

  #values(type: DataType, sources: readonly (Vector | null)[], blocks: Blocks): Vector {
    const values: unknown[] = new Array(blocks.rows)
    for (let b = 0, k = 0; b < blocks.length; b++) {
      const source = sources[blocks.source[b]!] ?? null
      const row = blocks.row[b]!
      for (let r = row; r < row + blocks.count[b]!; r++) values[k++] = source?.get(r) ?? null
    }
    return vectorFromArray(values, type)
  }

  /** A categorical column gathered by index: each source's dictionary is interned once. */
  #categorical(type: DataType, sources: readonly (Data | null)[], blocks: Blocks): Vector {
    const length = blocks.rows
    const ids = new Int32Array(length)
    const nulls = new Uint8Array(Math.ceil(length / 8)).fill(0xff)
    let nullCount = 0
    const interner = this.#interner
    // Each source's ids in the iteration's numbering, looked up once per batch, not per row.
    const tables: (Int32Array | undefined)[] = new Array(sources.length)
    for (let b = 0, k = 0; b < blocks.length; b++) {
      const s = blocks.source[b]!
      const data = sources[s] ?? null
      const row = blocks.row[b]!
      const end = row + blocks.count[b]!
      if (data === null) {
        for (let r = row; r < end; r++, k++) nulls[k >> 3]! &= ~(1 << (k & 7))
        nullCount += end - row
        continue
      }
      let table = tables[s]
      if (table === undefined) table = tables[s] = interner.idsOf(data.dictionary!)
      const values = data.values as Int32Array
      for (let r = row; r < end; r++, k++) {
        if (data.nullCount > 0 && !data.getValid(r)) {
          nulls[k >> 3]! &= ~(1 << (k & 7))
          nullCount++
          continue
        }
        ids[k] = table[values[r]!]!
      }
    }
    let dictionary: Vector
    if (interner.strings.length <= SHARED_DICTIONARY_MAX) {
      dictionary = interner.dictionary()
    } else {
      const batchIndex = new Map<number, number>()
      const values: string[] = []
      for (let k = 0; k < length; k++) {
        if (nullCount > 0 && (nulls[k >> 3]! & (1 << (k & 7))) === 0) continue
        let index = batchIndex.get(ids[k]!)
        if (index === undefined) {
          index = values.length
          values.push(interner.strings[ids[k]!]!)
          batchIndex.set(ids[k]!, index)
        }
        ids[k] = index
      }
      dictionary = vectorFromArray(values, new Utf8())
    }
    return makeVector(
      makeData({
        type: type as Dictionary<Utf8, Int32>,
        length,
        nullCount,
        ...(nullCount > 0 ? { nullBitmap: nulls } : {}),
        data: ids,
        dictionary,
      }),
    )
  }
}

/**
 * A batch inside one source, as a view of its stored vectors: nothing is copied. `null`
 * when the source has no values for the field.
 */
function sharedVectors(dim: number, data: Data | null, blocks: Blocks): Float32Array | null {
  if (data === null) return null
  const start = blocks.row[0]! * dim
  return (data.children[0]!.values as Float32Array).subarray(start, start + blocks.count[0]! * dim)
}

/**
 * Puts the rows of a shuffled window's embedding column into the window's order, in place:
 * afterwards window position `p` (the window's buckets one after another, `bucketOf[p]` and
 * `rowOf[p]`) holds the vector that record `order[p]` held. A shuffled batch can then be
 * handed out as a view of the bytes as read, as an in-order one is, instead of a new buffer
 * per batch: measured on 512-d vectors, a shuffled pass spent 44% of its main thread in
 * garbage collection, mostly for those buffers. Each row is moved once (cycle by cycle,
 * through one spare row).
 *
 * The window's columns must be the caller's own (freshly decoded, not yet handed out).
 * Returns `false`, changing nothing, when a source has no values for the field or has nulls
 * (the batch is then gathered row by row).
 */
export function permuteVectorsInPlace(
  dim: number,
  sources: readonly (Vector | null)[],
  bucketOf: Uint32Array,
  rowOf: Uint32Array,
  order: Uint32Array,
): boolean {
  const values: Float32Array[] = []
  for (const source of sources) {
    if (source === null || source.data.length !== 1 || source.nullCount > 0) return false
    values.push(source.data[0]!.children[0]!.values as Float32Array)
  }
  // The read threads' own moves (`@dreamdb/cas`), here on this thread.
  permuteRows({
    buffers: values.map((v) => v.buffer),
    offsets: values.map((v) => v.byteOffset),
    rowBytes: dim * 4,
    bucketOf,
    rowOf,
    order,
  })
  return true
}

/**
 * `permuteVectorsInPlace` for rows of `width` 32-bit words (a categorical column's ids: 1;
 * anchors seen as two halves: 2), one array per bucket: afterwards index `p` (row `rowOf[p]`
 * of array `bucketOf[p]`) holds the row that index `order[p]` held. The arrays must be the
 * caller's own.
 */
export function permuteWordsInPlace(
  arrays: readonly (Int32Array | Uint32Array)[],
  width: number,
  bucketOf: Uint32Array,
  rowOf: Uint32Array,
  order: Uint32Array,
): void {
  // A gather from a copy, not the cycle walk of the vectors: a window's words are small (its
  // anchors: 256 KiB for 32 768 records), so the copy stays in cache, and each row is one
  // read and one write without a `done` mark or a branch per row. Profiled on shuffled
  // passes over 1M x 128-d (anchors and label ids, loads 5-9): about 120 -> 45 ms a pass.
  const n = order.length
  const copies = arrays.map((a) => a.slice())
  if (arrays.length === 1) {
    const from = copies[0]!
    const to = arrays[0]!
    if (width === 1) for (let p = 0; p < n; p++) to[rowOf[p]!] = from[rowOf[order[p]!]!]!
    else if (width === 2)
      for (let p = 0; p < n; p++) {
        const t = rowOf[p]! * 2
        const f = rowOf[order[p]!]! * 2
        to[t] = from[f]!
        to[t + 1] = from[f + 1]!
      }
    else
      for (let p = 0; p < n; p++) {
        const t = rowOf[p]! * width
        const f = rowOf[order[p]!]! * width
        for (let k = 0; k < width; k++) to[t + k] = from[f + k]!
      }
    return
  }
  for (let p = 0; p < n; p++) {
    const q = order[p]!
    const to = arrays[bucketOf[p]!]!
    const from = copies[bucketOf[q]!]!
    const t = rowOf[p]! * width
    const f = rowOf[q]! * width
    for (let k = 0; k < width; k++) to[t + k] = from[f + k]!
  }
}

/**
 * A shuffled window's categorical column in the window's order, as new columns (one per
 * bucket, the same rows each) that share one dictionary: the buckets' own dictionaries one
 * after another, each bucket's ids shifted by the length of those before it. A batch then
 * takes the ids of its rows in blocks, as it takes a view of the vectors, instead of one
 * row at a time through each bucket's own dictionary (issue #13: about 14 ms a shuffled pass
 * at 100k x 512-d, two buckets a window). A value present in two buckets' dictionaries gets
 * two ids here; the gatherer's interner maps both to one, as it did per bucket. The decoded
 * columns are left as they are (they may share an object's bytes with another bucket).
 *
 * Afterwards index `p` (row `rowOf[p]` of bucket `bucketOf[p]`) holds the id that index
 * `order[p]` held. Returns `null` when a bucket has no values for the field, has nulls or is
 * not one chunk of 32-bit ids (its batches are then gathered row by row).
 */
export function permuteCategorical(
  sources: readonly (Vector | null)[],
  bucketOf: Uint32Array,
  rowOf: Uint32Array,
  order: Uint32Array,
): Vector[] | null {
  const data: Data[] = []
  for (const source of sources) {
    if (source === null || source.data.length !== 1 || source.nullCount > 0) return null
    const chunk = source.data[0]!
    if (!(chunk.values instanceof Int32Array) || chunk.dictionary === undefined || chunk.offset !== 0)
      return null
    data.push(chunk)
  }
  if (data.length === 0) return null
  const shift = new Int32Array(data.length)
  for (let b = 1; b < data.length; b++) shift[b] = shift[b - 1]! + data[b - 1]!.dictionary!.length
  const dictionary =
    data.length === 1
      ? data[0]!.dictionary!
      : data[0]!.dictionary!.concat(...data.slice(1).map((d) => d.dictionary!))
  const from = data.map((d) => d.values as Int32Array)
  const ids = data.map((d) => new Int32Array(d.length))
  const n = order.length
  if (data.length === 1) {
    // One bucket (128-d and smaller vectors): one array, nothing to shift.
    const source = from[0]!
    const into = ids[0]!
    for (let p = 0; p < n; p++) into[rowOf[p]!] = source[rowOf[order[p]!]!]!
  } else
    for (let p = 0; p < n; p++) {
      const q = order[p]!
      const s = bucketOf[q]!
      ids[bucketOf[p]!]![rowOf[p]!] = from[s]![rowOf[q]!]! + shift[s]!
    }
  return data.map((d, b) =>
    makeVector(
      makeData({
        type: d.type as Dictionary<Utf8, Int32>,
        length: d.length,
        nullCount: 0,
        data: ids[b]!,
        dictionary,
      }),
    ),
  )
}

/** Moves a window's rows on another thread (the read threads of @dreamdb/cas). */
export type RowPermuter = (
  permute: RowPermutation,
  signal?: AbortSignal,
) => Promise<(ArrayBuffer | SharedArrayBuffer)[]>

/**
 * `permuteVectorsInPlace` done on another thread: the same rows moved the same way, by
 * `permute`, while this thread builds batches. Only for columns in SharedArrayBuffers
 * (reads into recycled buffers), which the other thread moves where they are. Measured on
 * shuffled passes (recycled buffers, 2 cores): the main thread's CPU per pass fell from
 * 620-660 to 250-280 ms at 1M x 128-d and from 130-140 to 60-90 ms at 100k x 512-d. An
 * ArrayBuffer would have to be transferred there and back, and V8 counts a buffer that
 * comes back as new external memory: 1.6-2x as many collections, and more CPU in all
 * than moving the rows here (measured), so those are left to the caller.
 *
 * Returns `false`, changing nothing, when a source does not qualify (then the caller
 * permutes in place itself). The buffers are being written until the promise settles: a
 * `permute` that gives up early (an abort) must not let them be reused before the other
 * thread is done.
 */
export async function permuteVectorsAside(
  field: Field,
  sources: readonly (Vector | null)[],
  bucketOf: Uint32Array,
  rowOf: Uint32Array,
  order: Uint32Array,
  permute: RowPermuter,
  signal?: AbortSignal,
): Promise<boolean> {
  if (field.family !== 'embedding') return false
  const values: Float32Array[] = []
  for (const source of sources) {
    if (source === null || source.data.length !== 1 || source.nullCount > 0) return false
    const flat = source.data[0]!.children[0]!.values as Float32Array
    if (!(flat.buffer instanceof SharedArrayBuffer)) return false
    values.push(flat)
  }
  await permute(
    {
      buffers: values.map((v) => v.buffer),
      offsets: values.map((v) => v.byteOffset),
      rowBytes: field.dim * 4,
      bucketOf,
      rowOf,
      order,
    },
    signal,
  )
  return true
}

/**
 * The vectors of a batch, copied into one buffer, one `set` per block (measured: a view and
 * `set` beat an element loop by 20%).
 */
function gatherVectors(dim: number, sources: readonly (Data | null)[], blocks: Blocks): Float32Array {
  const flat = new Float32Array(blocks.rows * dim)
  const stored = sources.map((data) => (data === null ? null : (data.children[0]!.values as Float32Array)))
  for (let b = 0, k = 0; b < blocks.length; b++) {
    const values = stored[blocks.source[b]!] ?? null
    const count = blocks.count[b]!
    if (values !== null) {
      const start = blocks.row[b]! * dim
      flat.set(values.subarray(start, start + count * dim), k * dim)
    }
    k += count
  }
  return flat
}

/**
 * Blocks over sources of several chunks (a binary field's fragments) as blocks over the
 * chunks themselves, each chunk a source; a block that crosses a chunk's end is cut there.
 */
function splitChunks(
  sources: readonly (Vector | null)[],
  blocks: Blocks,
): { sources: (Data | null)[]; blocks: Blocks } {
  const chunks: (Data | null)[] = []
  // Per source: its first chunk's index in `chunks`, and each chunk's first row.
  const firstChunk: number[] = []
  const chunkStarts: number[][] = []
  for (const source of sources) {
    firstChunk.push(chunks.length)
    const starts: number[] = []
    if (source === null) chunks.push(null)
    else {
      let row = 0
      for (const data of source.data) {
        starts.push(row)
        chunks.push(data)
        row += data.length
      }
    }
    chunkStarts.push(starts)
  }
  const out = new Blocks()
  for (let b = 0; b < blocks.length; b++) {
    const s = blocks.source[b]!
    const starts = chunkStarts[s]!
    let row = blocks.row[b]!
    let count = blocks.count[b]!
    if (starts.length === 0) {
      out.push(firstChunk[s]!, row, count)
      continue
    }
    // The last chunk starting at or before `row` (few chunks per source: a linear scan).
    let c = starts.length - 1
    while (c > 0 && starts[c]! > row) c--
    while (count > 0) {
      const end = c + 1 < starts.length ? starts[c + 1]! : Number.POSITIVE_INFINITY
      const take = Math.min(count, end - row)
      out.push(firstChunk[s]! + c, row - starts[c]!, take)
      row += take
      count -= take
      c++
    }
  }
  return { sources: chunks, blocks: out }
}

/** Binary values: a view of one source's bytes, else one copy per block. */
function gatherBinary(sources: readonly (Data | null)[], blocks: Blocks): Vector {
  const length = blocks.rows
  const type = new Binary()
  if (blocks.length === 1 && sources[blocks.source[0]!] !== null) {
    // Arrow offsets may start anywhere in the data, so the batch shares the source's bytes.
    const data = sources[blocks.source[0]!]!
    const at = blocks.row[0]!
    return makeVector(
      makeData({
        type,
        length,
        nullCount: 0,
        valueOffsets: data.valueOffsets.subarray(at, at + length + 1),
        data: data.values,
      }),
    )
  }
  const offsets = new Int32Array(length + 1)
  for (let b = 0, k = 0; b < blocks.length; b++) {
    const data = sources[blocks.source[b]!] ?? null
    const count = blocks.count[b]!
    const at = blocks.row[b]!
    for (let r = 0; r < count; r++, k++) {
      const size = data === null ? 0 : data.valueOffsets[at + r + 1]! - data.valueOffsets[at + r]!
      offsets[k + 1] = offsets[k]! + size
    }
  }
  const bytes = new Uint8Array(offsets[length]!)
  for (let b = 0, k = 0; b < blocks.length; b++) {
    const data = sources[blocks.source[b]!] ?? null
    const count = blocks.count[b]!
    if (data !== null) {
      const at = blocks.row[b]!
      bytes.set(
        (data.values as Uint8Array).subarray(data.valueOffsets[at]!, data.valueOffsets[at + count]!),
        offsets[k]!,
      )
    }
    k += count
  }
  const nulls = missing(sources, blocks)
  return makeVector(
    makeData({
      type,
      length,
      nullCount: nulls.count,
      ...(nulls.count > 0 ? { nullBitmap: nulls.bitmap } : {}),
      valueOffsets: offsets,
      data: bytes,
    }),
  )
}

/** The validity of a batch's rows: those of a `null` source have no value. */
function missing(sources: readonly (Data | null)[], blocks: Blocks): { bitmap: Uint8Array; count: number } {
  const bitmap = new Uint8Array(Math.ceil(blocks.rows / 8)).fill(0xff)
  let count = 0
  if (!sources.includes(null)) return { bitmap, count }
  for (let b = 0, k = 0; b < blocks.length; b++) {
    const n = blocks.count[b]!
    if (sources[blocks.source[b]!] === null) {
      for (let r = k; r < k + n; r++) bitmap[r >> 3]! &= ~(1 << (r & 7))
      count += n
    }
    k += n
  }
  return { bitmap, count }
}

/**
 * Interns the strings of stored dictionaries for one iteration: each source's dictionary is
 * mapped once to ids shared by every source, so gathering a row is an integer lookup.
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
