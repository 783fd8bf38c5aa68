/**
 * How one field's values for one bucket become bytes, and back.
 *
 * - Scalars: an Arrow IPC stream of one column (categorical as a dictionary of strings,
 *   string as Utf8, int as Int64, float as Float64, bool, timestamp as ms). Nulls allowed.
 * - Embeddings: an Arrow IPC stream of one FixedSizeList<Float32>[dim] column. This is the
 *   plain float32 encoding; compressed encodings (RaBitQ from `@dreamdb/vector`) decode to
 *   the same column type.
 * - Binary: a fragment (the records' bytes back to back) plus an index (Arrow IPC: offset,
 *   length and sha2-256 of each record), so a stream reads one large object per bucket and a
 *   single record can be read with one verified ranged read.
 */
import { createHash } from 'node:crypto'
import type { EmbeddingField, Field, ScalarField } from '@dreamdb/manifest'
import { decodeCodes, encodeCodes, type SpatialIndex, type VectorCompressor } from '@dreamdb/vector'
import {
  Field as ArrowField,
  Table as ArrowTable,
  Binary,
  Bool,
  type Data,
  type DataType,
  Dictionary,
  FixedSizeBinary,
  FixedSizeList,
  Float32,
  Float64,
  Int32,
  Int64,
  makeData,
  makeVector,
  type Table,
  TimestampMillisecond,
  tableFromIPC,
  tableToIPC,
  Uint64,
  Utf8,
  Vector,
} from 'apache-arrow'
import { CorruptFieldObjectError, InvalidFieldError, InvalidValueError } from './errors.js'

/** The scalar kinds this package encodes (those of `@dreamdb/manifest`). */
const SCALAR_KINDS = ['categorical', 'string', 'int', 'float', 'bool', 'timestamp'] as const
const FAMILIES = ['binary', 'embedding', 'scalar'] as const
const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

/**
 * What encodes and decodes an embedding field whose schema names a spatial index and a
 * compressor: the objects themselves, loaded from the store (`@dreamdb/vector`).
 */
export interface EmbeddingCodec {
  spatialIndex: SpatialIndex
  compressor: VectorCompressor
}

/** Codecs by field name, for the compressed embedding fields of a schema. */
export type Codecs = ReadonlyMap<string, EmbeddingCodec>

/** Whether a field's values are stored as codes (it names a spatial index and a compressor). */
export function isCompressed(field: Field): boolean {
  return field.family === 'embedding' && field.spatialIndex !== null && field.compressor !== null
}

/**
 * The object keys a read of `field` needs: `<field>` and its parts, except that a compressed
 * embedding with full vectors kept (rerank) is read from its exact `vectors` part alone.
 */
export function keysToRead(field: Field, available: readonly string[]): string[] {
  const own = available.filter((k) => k === field.name || k.startsWith(`${field.name}/`))
  if (isCompressed(field) && own.includes(`${field.name}/vectors`)) return [`${field.name}/vectors`]
  return own
}

/** The bytes of one field for one bucket: the main object, and parts by name. */
export interface EncodedField {
  main: Uint8Array
  parts: Record<string, Uint8Array>
}

/** The Arrow type a field's column has in every batch DreamDB yields. */
export function arrowTypeOf(field: Field): DataType {
  switch (field.family) {
    case 'binary':
      return new Binary()
    case 'embedding':
      return new FixedSizeList(field.dim, new ArrowField('item', new Float32(), false))
    case 'scalar':
      return scalarType(field)
    default:
      throw new InvalidFieldError(
        (field as { name?: string }).name ?? '?',
        'family',
        (field as { family?: unknown }).family,
        FAMILIES,
      )
  }
}

function scalarType(field: ScalarField): DataType {
  switch (field.kind) {
    case 'categorical':
      return new Dictionary(new Utf8(), new Int32())
    case 'string':
      return new Utf8()
    case 'int':
      return new Int64()
    case 'float':
      return new Float64()
    case 'bool':
      return new Bool()
    case 'timestamp':
      return new TimestampMillisecond()
    default:
      throw new InvalidFieldError(field.name, 'kind', (field as { kind?: unknown }).kind, SCALAR_KINDS)
  }
}

function ipcOf(name: string, vector: Vector): Uint8Array {
  return tableToIPC(new ArrowTable({ [name]: vector }), 'stream')
}

/**
 * Validate and encode `values` (one per record) for `field`. Throws InvalidValueError. A
 * compressed embedding stores a code block (`@dreamdb/vector`), plus the float32 vectors as
 * a `vectors` part when the field keeps them for rerank.
 */
export function encodeField(
  field: Field,
  values: readonly unknown[],
  codecs: Codecs = new Map(),
  options: EncodeOptions = {},
): EncodedField {
  switch (field.family) {
    case 'scalar':
      return { main: ipcOf(field.name, valuesColumn(field, values)), parts: {} }
    case 'embedding': {
      const vectors = valuesColumn(field, values)
      if (!isCompressed(field)) return { main: ipcOf(field.name, vectors), parts: {} }
      const codec = codecs.get(field.name)
      if (codec === undefined)
        throw new InvalidValueError(field.name, 0, 'its spatial index and compressor were not loaded')
      const flat = vectors.data[0]!.children[0]!.values as Float32Array
      const main = encodeCodes(codec.spatialIndex, codec.compressor, flat)
      return { main, parts: field.rerank ? { vectors: ipcOf(field.name, vectors) } : {} }
    }
    case 'binary':
      return encodeBinary(field.name, values, options.fragmentBytes, options.digests?.[field.name])
    default:
      throw new InvalidFieldError(
        (field as { name?: string }).name ?? '?',
        'family',
        (field as { family?: unknown }).family,
        FAMILIES,
      )
  }
}

/**
 * Validate `values` (one per record) for a scalar or embedding field and build the column
 * `encodeField` stores (a compressed embedding's float32 vectors, before coding). Throws
 * InvalidValueError.
 */
export function valuesColumn(field: ScalarField | EmbeddingField, values: readonly unknown[]): Vector {
  return field.family === 'embedding' ? embeddingVector(field, values) : scalarVector(field, values)
}

/**
 * The dictionary id written into every stored categorical object (its one dictionary).
 * Arrow JS numbers the dictionary types a process makes (0, 1, ...) and writes the number
 * into the stream, so before issue #13 the same labels written by two processes could get
 * two CIDs and not dedupe. Objects written so carry another id and read the same: readers
 * take the id from the stream (design/0003, "Stored bytes").
 */
const STORED_DICTIONARY_ID = 0

/**
 * A scalar column built straight into its buffers, one pass over the values: what
 * `vectorFromArray` gave before issue #13, buffer for buffer (the stored bytes and CIDs are
 * the same, pinned in test/scalar-encode.test.ts against that path). Arrow's builders cost
 * ~2.7 ms of main-thread CPU a 1 024-row ingest chunk, and each builder's code was
 * deoptimized and compiled again whenever a chunk's vectors died (design/0006).
 */
function scalarVector(field: ScalarField, values: readonly unknown[]): Vector {
  const fail = (i: number, expected: string, value: unknown): never => {
    throw new InvalidValueError(field.name, i, `expected ${expected}, got ${describe(value)}`, { value })
  }
  // An unknown kind is a field error, before any value is looked at.
  if (!(SCALAR_KINDS as readonly unknown[]).includes(field.kind)) scalarType(field)
  const length = values.length
  // Arrow's bitmap builder rounds a bitmap up to 64 bytes, and the IPC writer writes the
  // whole buffer (validity and bool values alike): the same size keeps the same bytes.
  const bitmapBytes = length === 0 ? 64 : ((((length + 7) >> 3) - 1) >> 6) * 64 + 64
  let nullCount = 0
  // Validity: set bits for the valid values; built after the values pass, only when a null
  // was seen (no nulls: no bitmap, as the builder's Data has none).
  const validity = (): { nullCount: number; nullBitmap?: Uint8Array } => {
    if (nullCount === 0) return { nullCount: 0 }
    const bitmap = new Uint8Array(bitmapBytes)
    for (let i = 0; i < length; i++)
      if (values[i] !== null && values[i] !== undefined) bitmap[i >> 3]! |= 1 << (i & 7)
    return { nullCount, nullBitmap: bitmap }
  }
  switch (field.kind) {
    case 'categorical': {
      const keys = new Map<string, number>()
      const labels: string[] = []
      const indices = new Int32Array(length)
      for (let i = 0; i < length; i++) {
        const v = values[i]
        if (v === null || v === undefined) {
          nullCount++
          continue
        }
        if (typeof v !== 'string') fail(i, 'a string', v)
        let k = keys.get(v as string)
        if (k === undefined) {
          k = labels.length
          keys.set(v as string, k)
          labels.push(v as string)
        }
        indices[i] = k
      }
      const dictionary = makeVector(
        makeData({ type: new Utf8(), length: labels.length, nullCount: 0, ...utf8Buffers(labels) }),
      )
      const type = new Dictionary(new Utf8(), new Int32(), STORED_DICTIONARY_ID)
      return makeVector(makeData({ type, length, data: indices, dictionary, ...validity() })).memoize()
    }
    case 'string': {
      for (let i = 0; i < length; i++) {
        const v = values[i]
        if (v === null || v === undefined) nullCount++
        else if (typeof v !== 'string') fail(i, 'a string', v)
      }
      const buffers = utf8Buffers(values as readonly (string | null | undefined)[])
      return makeVector(makeData({ type: new Utf8(), length, ...buffers, ...validity() }))
    }
    case 'int': {
      const out = new BigInt64Array(length)
      // Safe integers written as 32-bit halves (little-endian, as typed arrays are on every
      // supported platform): no bigint per value.
      const halves = new Int32Array(out.buffer)
      for (let i = 0; i < length; i++) {
        const v = values[i]
        if (v === null || v === undefined) nullCount++
        else if (typeof v === 'number' && Number.isSafeInteger(v)) {
          const high = Math.floor(v / 4294967296)
          halves[2 * i] = v - high * 4294967296
          halves[2 * i + 1] = high
        } else if (typeof v === 'bigint' && v >= INT64_MIN && v <= INT64_MAX) out[i] = v
        else fail(i, 'an integer (a safe integer number or an int64 bigint)', v)
      }
      return makeVector(makeData({ type: new Int64(), length, data: out, ...validity() }))
    }
    case 'float': {
      const out = new Float64Array(length)
      for (let i = 0; i < length; i++) {
        const v = values[i]
        if (v === null || v === undefined) nullCount++
        else if (typeof v === 'number') out[i] = v
        else fail(i, 'a number', v)
      }
      return makeVector(makeData({ type: new Float64(), length, data: out, ...validity() }))
    }
    case 'bool': {
      const out = new Uint8Array(bitmapBytes)
      for (let i = 0; i < length; i++) {
        const v = values[i]
        if (v === null || v === undefined) nullCount++
        else if (typeof v !== 'boolean') fail(i, 'a boolean', v)
        else if (v) out[i >> 3]! |= 1 << (i & 7)
      }
      return makeVector(makeData({ type: new Bool(), length, data: out, ...validity() }))
    }
    case 'timestamp': {
      const out = new BigInt64Array(length)
      for (let i = 0; i < length; i++) {
        const v = values[i]
        if (v === null || v === undefined) nullCount++
        else if (v instanceof Date && !Number.isNaN(v.getTime())) out[i] = BigInt(v.getTime())
        // BigInt throws a RangeError on a fraction of a ms, as Arrow's builder did.
        else if (typeof v === 'number' && Number.isFinite(v)) out[i] = BigInt(v)
        else fail(i, 'a Date or ms since the epoch', v)
      }
      return makeVector(makeData({ type: new TimestampMillisecond(), length, data: out, ...validity() }))
    }
  }
}

const utf8Encoder = new TextEncoder()

/**
 * The offsets and bytes of `strings` as Utf8 (a null or undefined is an empty slot). All
 * strings are encoded at once when they are ASCII (as nearly all labels and paths are),
 * each on its own otherwise: one joined encoding could pair one string's lone surrogate
 * with the next one's.
 */
function utf8Buffers(strings: readonly (string | null | undefined)[]): {
  valueOffsets: Int32Array
  data: Uint8Array
} {
  const length = strings.length
  const valueOffsets = new Int32Array(length + 1)
  // join writes a null or undefined as nothing.
  const joined = strings.join('')
  let bytes = Buffer.from(joined, 'utf8')
  if (bytes.byteLength === joined.length) {
    let at = 0
    for (let i = 0; i < length; i++) {
      at += strings[i]?.length ?? 0
      valueOffsets[i + 1] = at
    }
  } else {
    let at = 0
    const pieces = strings.map((s, i) => {
      const piece = utf8Encoder.encode(s ?? '')
      at += piece.byteLength
      valueOffsets[i + 1] = at
      return piece
    })
    bytes = Buffer.allocUnsafe(at)
    let offset = 0
    for (const piece of pieces) {
      bytes.set(piece, offset)
      offset += piece.byteLength
    }
  }
  return { valueOffsets, data: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) }
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value)
  if (typeof value === 'string')
    return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`
  if (value instanceof Uint8Array) return `${value.byteLength} bytes`
  if (Array.isArray(value)) return `an array of ${value.length}`
  return `${typeof value} ${String(value).slice(0, 40)}`
}

/**
 * Check one vector: a Float32Array, Float64Array or array of `field.dim` numbers, every
 * component a finite number (and finite as a float32). Nothing is coerced: a string such
 * as `'1e3'`, a boolean or a bigint component is refused, naming the component.
 */
export function checkVector(field: EmbeddingField, value: unknown, index: number): Float32Array {
  if (value instanceof Float32Array) {
    writeVector(field, value, index, value, 0)
    return value
  }
  const out = new Float32Array(field.dim)
  writeVector(field, value, index, out, 0)
  return out
}

/** Check one vector as `checkVector` does and copy it into `out` at `offset`. */
function writeVector(
  field: EmbeddingField,
  value: unknown,
  index: number,
  out: Float32Array,
  offset: number,
): void {
  const isTyped = value instanceof Float32Array || value instanceof Float64Array
  if (!isTyped && !Array.isArray(value)) {
    throw new InvalidValueError(
      field.name,
      index,
      `expected a vector of ${field.dim} numbers, got ${describe(value)}`,
      { value },
    )
  }
  const vector = value as ArrayLike<unknown>
  if (vector.length !== field.dim) {
    throw new InvalidValueError(field.name, index, `expected dimension ${field.dim}, got ${vector.length}`, {
      value: vector.length,
    })
  }
  if (isTyped) {
    // Typed arrays hold numbers only: one bulk copy, then the finiteness check.
    if (value !== out) out.set(value as Float32Array | Float64Array, offset)
  } else {
    for (let d = 0; d < field.dim; d++) {
      const x = vector[d]
      if (typeof x !== 'number') {
        throw new InvalidValueError(
          field.name,
          index,
          `component ${d} is ${describe(x)}, not a number (values are never coerced)`,
          { value: x },
        )
      }
      out[offset + d] = x
    }
  }
  for (let d = 0; d < field.dim; d++) {
    if (!Number.isFinite(out[offset + d]!)) {
      const x = vector[d] as number
      throw new InvalidValueError(
        field.name,
        index,
        Number.isFinite(x)
          ? `component ${d} is ${x}, beyond the float32 range`
          : `component ${d} is ${x}, not a finite number`,
        { value: x },
      )
    }
  }
}

/** A FixedSizeList<Float32>[dim] vector over one contiguous Float32Array. */
export function embeddingColumn(
  field: EmbeddingField,
  flat: Float32Array,
  nulls?: { bitmap: Uint8Array; count: number },
): Vector {
  const length = flat.length / field.dim
  const child = makeData({ type: new Float32(), length: flat.length, data: flat })
  return makeVector(
    makeData({
      type: arrowTypeOf(field) as FixedSizeList<Float32>,
      length,
      child,
      nullCount: nulls?.count ?? 0,
      ...(nulls !== undefined && nulls.count > 0 ? { nullBitmap: nulls.bitmap } : {}),
    }),
  )
}

function embeddingVector(field: EmbeddingField, values: readonly unknown[]): Vector {
  const flat = new Float32Array(values.length * field.dim)
  values.forEach((value, i) => {
    writeVector(field, value, i, flat, i * field.dim)
  })
  return embeddingColumn(field, flat)
}

/**
 * Bytes of binary values per fragment, at most, unless one value is larger (it then has a
 * fragment of its own). Iteration reads a fragment whole; a bucket's record count is
 * decided by its other fields (design/0005).
 */
export const FRAGMENT_BYTES = 64 << 20

/** The part key of fragment `k` (k >= 1); fragment 0 is the field's main object. */
export const fragmentPart = (k: number): string => `fragment-${k}`

/** Options of `encodeField` and `encodeBucket`. */
export interface EncodeOptions {
  /** Bytes of binary values per fragment, at most (a larger value gets its own). @default 64 MiB */
  fragmentBytes?: number
  /**
   * Known sha2-256 digests of a binary field's values, by field name: 32 bytes per record, in
   * record order, used as the index's digests instead of hashing each value here (ingest takes
   * them on its decode thread, from the same bytes, so the main thread does not hash every
   * image a second time). Not checked against the values: a wrong one is stored as given, and
   * reads of that record then fail verification (ObjectIntegrityError).
   */
  digests?: Readonly<Record<string, Uint8Array>>
}

/**
 * Binary values: fragments (the records' bytes back to back, in record order, each at most
 * `fragmentBytes` unless one value is larger) plus an index of offset, length and sha2-256
 * per record. One fragment is the layout written before issue #13, byte for byte; with
 * several, the first stays the main object, the others are parts `fragment-1`, ... and the
 * index gains a `fragment` column (each record's fragment; offsets are within it).
 */
function encodeBinary(
  name: string,
  values: readonly unknown[],
  fragmentBytes = FRAGMENT_BYTES,
  known?: Uint8Array,
): EncodedField {
  if (known !== undefined && (!(known instanceof Uint8Array) || known.byteLength !== values.length * 32)) {
    throw new InvalidValueError(
      name,
      0,
      `known digests must be 32 bytes per value (${values.length * 32}), got ${describe(known)}${known instanceof Uint8Array ? ` of ${known.byteLength} bytes` : ''}`,
    )
  }
  // Where each fragment starts (record index) and its byte size.
  const starts: number[] = [0]
  const sizes: number[] = [0]
  values.forEach((value, i) => {
    if (!(value instanceof Uint8Array))
      throw new InvalidValueError(name, i, `expected bytes (Uint8Array), got ${describe(value)}`)
    if (value.byteLength > 2 ** 31 - 1) throw new InvalidValueError(name, i, 'one value holds at most 2 GiB')
    const last = sizes.length - 1
    if (i > starts[last]! && sizes[last]! + value.byteLength > fragmentBytes) {
      starts.push(i)
      sizes.push(0)
    }
    sizes[sizes.length - 1]! += value.byteLength
  })
  // A fragment whose values already lie back to back in one buffer (a binary column's values
  // decoded from Arrow or Parquet, as ingest hands them over) is a view of it: no copy, and
  // no fresh buffer for the garbage collector. The view is held until the append resolves.
  const fragments = sizes.map((size, k) =>
    contiguous(values, starts[k]!, starts[k + 1] ?? values.length, size),
  )
  const copy = fragments.map((f) => f === undefined)
  const offsets = new BigUint64Array(values.length)
  const lengths = new Uint32Array(values.length)
  const digests = known?.slice() ?? new Uint8Array(values.length * 32)
  const fragmentOf = new Uint32Array(values.length)
  let k = 0
  let offset = 0
  values.forEach((value, i) => {
    if (k + 1 < starts.length && i === starts[k + 1]) {
      k++
      offset = 0
    }
    const bytes = value as Uint8Array
    if (copy[k]) {
      fragments[k] ??= new Uint8Array(sizes[k]!)
      fragments[k]!.set(bytes, offset)
    }
    offsets[i] = BigInt(offset)
    lengths[i] = bytes.byteLength
    fragmentOf[i] = k
    if (known === undefined) digests.set(createHash('sha256').update(bytes).digest(), i * 32)
    offset += bytes.byteLength
  })
  // No values at all: one empty fragment.
  fragments[0] ??= new Uint8Array(0)
  const columns: Record<string, Vector> = {
    offset: makeVector(offsets),
    length: makeVector(lengths),
    sha256: makeVector(
      makeData({ type: new FixedSizeBinary(32), length: values.length, nullCount: 0, data: digests }),
    ),
  }
  // One fragment keeps the index as it was (no `fragment` column), so its CID is unchanged.
  if (fragments.length > 1) columns.fragment = makeVector(fragmentOf)
  const parts: Record<string, Uint8Array> = { index: tableToIPC(new ArrowTable(columns), 'stream') }
  fragments.slice(1).forEach((bytes, j) => {
    parts[fragmentPart(j + 1)] = bytes!
  })
  return { main: fragments[0]!, parts }
}

/**
 * Values `[from, to)` as one view when they lie back to back in one buffer (`size` bytes in
 * all), else undefined.
 */
function contiguous(
  values: readonly unknown[],
  from: number,
  to: number,
  size: number,
): Uint8Array | undefined {
  if (to <= from) return undefined
  const first = values[from] as Uint8Array
  let end = first.byteOffset + first.byteLength
  for (let i = from + 1; i < to; i++) {
    const value = values[i] as Uint8Array
    if (value.buffer !== first.buffer || value.byteOffset !== end) return undefined
    end += value.byteLength
  }
  return new Uint8Array(first.buffer, first.byteOffset, size)
}

/** One column out of an IPC stream, checked against the field and the record count. */
function columnOf(field: Field, cid: string, bytes: Uint8Array, records: number): Vector {
  let table: Table
  try {
    table = tableFromIPC(bytes)
  } catch (cause) {
    throw new CorruptFieldObjectError(field.name, cid, 'not an Arrow IPC stream', { cause })
  }
  const column = table.getChild(field.name)
  if (column === null) throw new CorruptFieldObjectError(field.name, cid, `it has no column '${field.name}'`)
  if (column.length !== records) {
    throw new CorruptFieldObjectError(
      field.name,
      cid,
      `it holds ${column.length} values for ${records} records`,
    )
  }
  return column
}

/** The offsets, lengths and digests of a binary fragment's records. */
export interface FragmentIndex {
  /** Each record's offset within its fragment. */
  offsets: BigUint64Array
  lengths: Uint32Array
  sha256: Uint8Array
  /** Each record's fragment (0: the main object, k: part `fragment-k`); null: all in one. */
  fragments: Uint32Array | null
}

export function decodeFragmentIndex(
  field: Field,
  cid: string,
  bytes: Uint8Array,
  records: number,
): FragmentIndex {
  let table: Table
  try {
    table = tableFromIPC(bytes)
  } catch (cause) {
    throw new CorruptFieldObjectError(field.name, cid, 'the fragment index is not an Arrow IPC stream', {
      cause,
    })
  }
  const column = (name: string) => {
    const c = table.getChild(name)
    if (c === null || c.length !== records) {
      throw new CorruptFieldObjectError(
        field.name,
        cid,
        `the fragment index lacks '${name}' for ${records} records`,
      )
    }
    return c.data[0]!.values as ArrayLike<unknown>
  }
  return {
    offsets: column('offset') as BigUint64Array,
    lengths: column('length') as Uint32Array,
    sha256: column('sha256') as Uint8Array,
    fragments: table.getChild('fragment') === null ? null : (column('fragment') as Uint32Array),
  }
}

/**
 * Decode one field's objects for a bucket of `records` records into its Arrow column. A
 * compressed embedding decodes its exact `vectors` part when given, else approximates the
 * vectors from its codes.
 */
export function decodeField(
  field: Field,
  records: number,
  main: { cid: string; bytes: Uint8Array } | undefined,
  parts: Record<string, { cid: string; bytes: Uint8Array }> = {},
  codecs: Codecs = new Map(),
): Vector {
  if (isCompressed(field)) {
    const exact = parts.vectors
    if (exact !== undefined) return columnOf(field, exact.cid, exact.bytes, records)
    const codec = codecs.get(field.name)
    if (main === undefined || codec === undefined) {
      throw new CorruptFieldObjectError(
        field.name,
        main?.cid ?? '?',
        'neither full vectors nor codes with their codec',
      )
    }
    let flat: Float32Array
    try {
      flat = decodeCodes(codec.spatialIndex, codec.compressor, main.bytes)
    } catch (cause) {
      throw new CorruptFieldObjectError(field.name, main.cid, 'not a code block of this field', { cause })
    }
    const embedding = field as EmbeddingField
    if (flat.length !== records * embedding.dim) {
      throw new CorruptFieldObjectError(
        field.name,
        main.cid,
        `it holds ${flat.length / embedding.dim} codes for ${records} records`,
      )
    }
    return embeddingColumn(embedding, flat)
  }
  if (main === undefined) throw new CorruptFieldObjectError(field.name, '?', 'the main object is missing')
  if (field.family !== 'binary') return columnOf(field, main.cid, main.bytes, records)
  const index = parts.index
  if (index === undefined)
    throw new CorruptFieldObjectError(field.name, main.cid, 'the fragment index part is missing')
  return binaryColumn(field, records, main, index, parts)
}

/**
 * A binary field's column: one Arrow chunk per fragment (a batch inside one fragment is a
 * view of it). Records must lie in their fragments back to back, in record order, and fill
 * them exactly, so no byte of a fragment is unaccounted for.
 */
function binaryColumn(
  field: Field,
  records: number,
  main: { cid: string; bytes: Uint8Array },
  index: { cid: string; bytes: Uint8Array },
  parts: Record<string, { cid: string; bytes: Uint8Array }>,
): Vector {
  const { offsets, lengths, fragments } = decodeFragmentIndex(field, index.cid, index.bytes, records)
  const corrupt = (reason: string) => new CorruptFieldObjectError(field.name, index.cid, reason)
  if (fragments === null) {
    const valueOffsets = new Int32Array(records + 1)
    for (let i = 0; i < records; i++) {
      const start = Number(offsets[i]!)
      if (start !== valueOffsets[i] || start + lengths[i]! > main.bytes.byteLength)
        throw corrupt(`record ${i} does not follow the previous one in the fragment`)
      valueOffsets[i + 1] = start + lengths[i]!
    }
    return makeVector(
      makeData({ type: new Binary(), length: records, nullCount: 0, valueOffsets, data: main.bytes }),
    )
  }
  const chunks: Data<Binary>[] = []
  let first = 0
  while (first < records) {
    const k = fragments[first]!
    if (k !== chunks.length) throw corrupt(`record ${first} is in fragment ${k}, expected ${chunks.length}`)
    const fragment = k === 0 ? main : parts[fragmentPart(k)]
    if (fragment === undefined) throw corrupt(`its fragment ${k} is missing`)
    let end = first
    while (end < records && fragments[end] === k) end++
    const valueOffsets = new Int32Array(end - first + 1)
    for (let i = first; i < end; i++) {
      const start = Number(offsets[i]!)
      if (start !== valueOffsets[i - first])
        throw corrupt(`record ${i} does not follow the previous one in fragment ${k}`)
      valueOffsets[i - first + 1] = start + lengths[i]!
    }
    if (valueOffsets[end - first] !== fragment.bytes.byteLength)
      throw corrupt(`its records do not fill fragment ${k} exactly`)
    chunks.push(
      makeData({
        type: new Binary(),
        length: end - first,
        nullCount: 0,
        valueOffsets,
        data: fragment.bytes,
      }),
    )
    first = end
  }
  if (parts[fragmentPart(chunks.length)] !== undefined)
    throw corrupt(`fragment ${chunks.length} holds no record`)
  return new Vector(chunks)
}

/** The `_anchor` column: uint64 record ids. */
export function anchorColumn(anchors: BigUint64Array): Vector {
  return makeVector(makeData({ type: new Uint64(), length: anchors.length, nullCount: 0, data: anchors }))
}
