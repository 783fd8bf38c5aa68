/**
 * Arrow tables from Python into the values `@dreamdb/dataset` takes. The bridge only moves
 * values: every check (dimensions, NaN, types, names) stays in the TypeScript packages, so
 * a Python user gets the same typed error a TypeScript user gets.
 */
import type { DatasetRecord, Sample } from '@dreamdb/dataset'
import {
  type Data,
  FixedSizeList,
  List,
  makeVector,
  type RecordBatch,
  type Table,
  Type,
  type Vector,
} from 'apache-arrow'

/** One JavaScript value per row of a column, as a TypeScript caller would pass it. */
export function columnValues(column: Vector): unknown[] {
  const out = new Array<unknown>(column.length)
  let at = 0
  for (const data of column.data) {
    fillFrom(data, out, at)
    at += data.length
  }
  return out
}

function isValid(data: Data, i: number): boolean {
  if (data.nullCount === 0 || data.nullBitmap === undefined || data.nullBitmap.length === 0) return true
  const bit = data.offset + i
  return (data.nullBitmap[bit >> 3]! & (1 << (bit & 7))) !== 0
}

function fillFrom(data: Data, out: unknown[], at: number): void {
  const type = data.type
  if (type instanceof FixedSizeList && type.children[0]!.type.typeId === Type.Float) {
    // Vectors as views of the received bytes: no copy per record.
    const child = data.children[0]!
    const size = type.listSize
    const values = child.values as Float32Array | Float64Array
    for (let i = 0; i < data.length; i++) {
      const start = (data.offset + i) * size + child.offset
      out[at + i] = isValid(data, i) ? values.subarray(start, start + size) : null
    }
    return
  }
  if (type instanceof List || type instanceof FixedSizeList) {
    // Python lists of anything else: plain arrays, checked by the layers below.
    const vector = makeVector(data)
    for (let i = 0; i < data.length; i++) {
      const value = vector.get(i) as Vector | null
      out[at + i] = value === null ? null : Array.from(value as Iterable<unknown>, plainScalar)
    }
    return
  }
  const vector = makeVector(data)
  for (let i = 0; i < data.length; i++) out[at + i] = plainScalar(vector.get(i))
}

function plainScalar(value: unknown): unknown {
  if (value instanceof Uint8Array) return value
  // Arrow's int64 comes back as a bigint; keep small ones as numbers, as a TS caller would.
  if (
    typeof value === 'bigint' &&
    value >= BigInt(Number.MIN_SAFE_INTEGER) &&
    value <= BigInt(Number.MAX_SAFE_INTEGER)
  )
    return Number(value)
  return value === undefined ? null : value
}

/** How Python shaped `append_many`'s records beside the table (see `_convert.py`). */
export interface RecordsShape {
  /** Rows, when no column could travel as Arrow. */
  rows?: number
  /** Columns Arrow could not hold faithfully (mixed types): JSON values, checked below. */
  jsonColumns?: Record<string, unknown[]>
  /** Rows that had no value for a key, so the dataset can name the record. */
  missing?: Record<string, number[]>
}

/** Records for `appendMany`, one object per row, as a TypeScript caller would build them. */
export function recordsOf(table: Table, shape: RecordsShape = {}): DatasetRecord[] {
  const names = table.schema.fields.map((f) => f.name)
  const columns = names.map((name) => columnValues(table.getChild(name)!))
  const extra = Object.entries(shape.jsonColumns ?? {})
  const rows = table.numCols > 0 ? table.numRows : (shape.rows ?? extra[0]?.[1].length ?? 0)
  const records: DatasetRecord[] = new Array(rows)
  for (let r = 0; r < rows; r++) {
    const record: DatasetRecord = {}
    for (let c = 0; c < names.length; c++) record[names[c]!] = columns[c]![r]
    for (const [name, values] of extra) record[name] = values[r]
    records[r] = record
  }
  for (const [name, absent] of Object.entries(shape.missing ?? {})) {
    for (const r of absent) if (records[r] !== undefined) delete records[r][name]
  }
  return records
}

/** Layer samples `[anchor, value]` from a table of `anchor` and `value` columns. */
export function samplesOf(
  table: Table | RecordBatch,
  json: { jsonAnchors?: unknown[]; jsonValues?: unknown[] } = {},
): Sample[] {
  const anchors = json.jsonAnchors ?? columnValues(table.getChild('anchor')!)
  const values = json.jsonValues ?? columnValues(table.getChild('value')!)
  // Whole numbers become bigints as a TypeScript caller's would; anything else goes to the
  // dataset as it came, which refuses it and names the sample.
  return anchors.map(
    (a, i) =>
      [typeof a === 'number' && Number.isSafeInteger(a) ? BigInt(a) : (a as bigint), values[i]] as const,
  )
}
